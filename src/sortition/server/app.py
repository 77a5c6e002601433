"""``create_app(store)``: the Starlette app of ``sortition serve``.

Lifespan: on start the catalog is loaded and the group-commit writer and the refresher start; on
shutdown (uvicorn's SIGTERM handling first finishes the requests in flight) the writer commits what
is queued and the store is closed, so every accepted event is durable before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sortition.server import admin, routes
from sortition.server.auth import AuthError
from sortition.server.metrics import Metrics, route_of
from sortition.server.openapi import openapi_document
from sortition.server.state import ServerState, Settings
from sortition.server.status import status_page
from sortition.store import EventStore


class _Timing:
    """Counts and times every request by route and status (a plain ASGI middleware: cheap)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_of(scope.get("path", ""))
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _readyz(request: Request) -> Response:
    state: ServerState = request.app.state.sortition
    problems = []
    if state.catalog.last_error:
        problems.append(f"store refresh failing: {state.catalog.last_error}")
    if not state.committer.alive:
        problems.append("the ingestion writer is not running")
    return PlainTextResponse("\n".join(problems) or "ready", 503 if problems else 200)


async def _metrics(request: Request) -> Response:
    state: ServerState = request.app.state.sortition
    return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4")


async def _openapi(request: Request) -> Response:
    return routes.json_response(openapi_document())


async def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return routes.error(
        exc.status, exc.message, headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    """JSON for unknown paths too (an OFREP path gets OFREP's error shape)."""
    if request.url.path.startswith("/ofrep/"):
        return routes.json_response(
            {"errorCode": "FLAG_NOT_FOUND", "errorDetails": "no such flag or path"}, 404
        )
    return routes.error(404, f"no such path: {request.url.path!r} (see /openapi.json)")


def create_app(store: EventStore | str, settings: Settings | None = None) -> Starlette:
    """The server app over ``store`` (an EventStore, or a DuckDB path / PostgreSQL URL to open).

    A store opened here is closed at shutdown; a given EventStore belongs to the caller.
    """
    own = not isinstance(store, EventStore)
    events_store = EventStore(store) if own else store
    settings = settings or Settings()
    state = ServerState.build(events_store, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(state.catalog.refresh)
        state.committer.start()
        refresher = asyncio.create_task(_refresh_forever(state))
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await run_in_threadpool(state.catalog.close)  # no store read in flight past this point
            await run_in_threadpool(state.committer.stop)
            if own:
                events_store.close()

    app = Starlette(
        routes=[
            Route("/", status_page),
            Route("/healthz", _healthz),
            Route("/readyz", _readyz),
            Route("/metrics", _metrics),
            Route("/openapi.json", _openapi),
            Route("/api/flag-config/v1/config", routes.flag_config),
            Route("/api/flag-config/v1/bandits", routes.bandits),
            Route("/ofrep/v1/evaluate/flags", routes.ofrep_bulk, methods=["POST"]),
            Route("/ofrep/v1/evaluate/flags/{key:path}", routes.ofrep_flag, methods=["POST"]),
            Route("/api/v1/events", routes.events, methods=["POST"]),
            Route("/api/v1/configurations", admin.publish, methods=["POST"]),
            Route("/api/v1/rollback", admin.rollback, methods=["POST"]),
            Route("/api/v1/rounds", admin.rounds, methods=["POST"]),
            Route("/api/v1/versions", admin.versions),
        ],
        exception_handlers={AuthError: _auth_error, 404: _not_found},
        lifespan=lifespan,
    )
    app.state.sortition = state
    app.add_middleware(_Timing, metrics=state.metrics)
    return app


async def _refresh_forever(state: ServerState) -> None:
    while True:
        await asyncio.sleep(state.settings.refresh_interval)
        await run_in_threadpool(state.catalog.refresh)


def app_state(app: Any) -> ServerState:
    return app.state.sortition
