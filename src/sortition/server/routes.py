"""The SDK-facing endpoints: configuration polls, OFREP evaluations, event ingestion."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sortition.openfeature import resolution as ofrep
from sortition.server.auth import Caller, authorize
from sortition.server.catalog import Document, Served
from sortition.server.ingest import (
    MAX_BODY_BYTES,
    BadRequest,
    Overloaded,
    decode_body,
    parse_events,
    validate,
)
from sortition.server.state import ServerState

VERSION_HEADER = "X-Sortition-Version"
ENVIRONMENT_HEADER = "X-Sortition-Environment"


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode()
    return Response(body, status, headers=headers, media_type="application/json")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers=headers)


def _state(request: Request) -> ServerState:
    return request.app.state.sortition


def version_headers(served: Served) -> dict[str, str]:
    return {VERSION_HEADER: str(served.version), ENVIRONMENT_HEADER: served.environment}


def _unpublished(environment: str) -> str:
    return (
        f"environment {environment!r} has no published configuration yet; publish one with "
        f"'sortition publish STORE FLAGS.json --environment {environment}'"
    )


def _served(request: Request, roles: tuple[str, ...]) -> tuple[ServerState, Caller, Served | Response]:
    """The caller (authorized for one of ``roles``) and its environment's served version (or a 404)."""
    state = _state(request)
    caller = authorize(request, state.catalog.keys, roles)
    served = state.catalog.get(caller.environment)
    return state, caller, error(404, _unpublished(caller.environment)) if served is None else served


def _etag_matches(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match")
    if not given:
        return False
    return given.strip() == "*" or etag in {t.strip().removeprefix("W/") for t in given.split(",")}


def send_document(request: Request, doc: Document, headers: dict[str, str]) -> Response:
    """A pre-rendered document, with ETag / If-None-Match (304) and gzip when accepted."""
    headers = {**headers, "ETag": doc.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if _etag_matches(request, doc.etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            doc.gzipped, headers={**headers, "Content-Encoding": "gzip"}, media_type="application/json"
        )
    return Response(doc.body, headers=headers, media_type="application/json")


async def flag_config(request: Request) -> Response:
    """GET /api/flag-config/v1/config: the served UFC document (CLIENT format for client keys)."""
    _, caller, served = _served(request, ("sdk", "client"))
    if isinstance(served, Response):
        return served
    obfuscated = caller.key.role == "client" or request.query_params.get("format") == "CLIENT"
    return send_document(
        request, served.client_flags if obfuscated else served.flags, version_headers(served)
    )


async def bandits(request: Request) -> Response:
    """GET /api/flag-config/v1/bandits: the served bandit models (server-side SDKs)."""
    _, _, served = _served(request, ("sdk",))
    if isinstance(served, Response):
        return served
    return send_document(request, served.bandits, version_headers(served))


async def _context(request: Request, key: str | None = None) -> tuple[Any, ...] | Response:
    try:
        body = await request.body()
        return ofrep.parse_context(json.loads(body) if body.strip() else {})
    except (ValueError, UnicodeDecodeError) as err:
        answer = {"errorCode": "INVALID_CONTEXT", "errorDetails": str(err)}
        return json_response(answer if key is None else {"key": key, **answer}, 400)


async def ofrep_flag(request: Request) -> Response:
    """POST /ofrep/v1/evaluate/flags/{key}."""
    state = _state(request)
    caller = authorize(request, state.catalog.keys, ("sdk", "client"))
    key = request.path_params["key"]
    served = state.catalog.get(caller.environment)
    if served is None:
        return json_response(
            {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": _unpublished(caller.environment)}, 404
        )
    context = await _context(request, key)
    if isinstance(context, Response):
        return context
    status, body = ofrep.evaluate(served.client, key, *context, served.environment, served.version)
    state.metrics.ofrep.inc()
    return json_response(body, status, headers=version_headers(served))


async def ofrep_bulk(request: Request) -> Response:
    """POST /ofrep/v1/evaluate/flags: every flag for one context, with an ETag of (version, context)."""
    state, _caller, served = _served(request, ("sdk", "client"))
    if isinstance(served, Response):
        return served
    raw = await request.body()
    context = await _context(request)
    if isinstance(context, Response):
        return context
    etag = '"' + hashlib.sha256(served.flags.etag.encode() + b"|" + raw).hexdigest()[:24] + '"'
    headers = {**version_headers(served), "ETag": etag}
    if _etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    flags = ofrep.evaluate_all(served.client, served.flag_keys, *context, served.environment, served.version)
    state.metrics.ofrep.inc(len(flags))
    return json_response(
        {"flags": flags, "metadata": {"environment": served.environment, "version": served.version}},
        headers=headers,
    )


async def events(request: Request) -> Response:
    """POST /api/v1/events: JSON array or NDJSON, gzip allowed; 200 only after the commit."""
    state = _state(request)
    authorize(request, state.catalog.keys, ("ingest",))
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return error(413, f"the body is over {MAX_BODY_BYTES // 2**20} MiB; send smaller batches")
    try:
        raw = await request.body()
        checked = validate(parse_events(decode_body(raw, request.headers.get("content-encoding"))))
    except BadRequest as err:
        return error(400, str(err))
    metrics = state.metrics
    if checked.rejected:
        metrics.rejected.inc(len(checked.rejected))
    try:
        await state.committer.submit(checked.rows, checked.accepted)
    except Overloaded as err:
        metrics.overloaded.inc()
        return error(429, str(err), headers={"Retry-After": str(err.retry_after)})
    except Exception as err:  # noqa: BLE001 - the store failed: nothing acknowledged, the client retries
        return error(
            503,
            f"the store could not commit the events ({type(err).__name__}); retry",
            headers={"Retry-After": "1"},
        )
    for kind, rows in checked.rows.items():
        if rows:
            metrics.accepted.labels(kind).inc(len(rows))
    metrics.minutes.add(checked.accepted, len(checked.rejected))
    return json_response(
        {"received": checked.received, "accepted": checked.accepted, "rejected": checked.rejected}
    )
