"""Admin endpoints (admin keys only): publish, versions, rollback, rounds.

Rounds run inside the server (``POST /api/v1/rounds``): DuckDB lets one process at a time write a
file, and ``sortition serve`` holds it, so ``sortition round --server URL --key ADMIN_KEY`` asks the
server to run the round on its own store (one round at a time) and to publish it. With PostgreSQL,
``sortition round STORE`` from another process works as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sortition.server.auth import authorize
from sortition.server.routes import error, json_response
from sortition.server.state import ServerState
from sortition.store import publishing
from sortition.store.publishing import DEFAULT_ENVIRONMENT, Publication, check_environment


def _state(request: Request) -> ServerState:
    return request.app.state.sortition


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"the body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def publication_json(p: Publication) -> dict[str, Any]:
    return {
        "seq": p.seq,
        "environment": p.environment,
        "version": p.version,
        "published_at": p.published_at.isoformat() + "Z",
        "action": p.action,
        "note": p.note,
    }


async def _admin(request: Request, work: Any) -> Response:
    state = _state(request)
    authorize(request, state.catalog.keys, ("admin",))
    try:
        body = await _body(request) if request.method == "POST" else {}
        result = await run_in_threadpool(work, state, body, request.query_params)
    except ValueError as err:
        # a round blocked by its sample-ratio check (workflows.daily.SampleRatioMismatch carries .srm):
        # 409, so the CLI can exit as the local round does; nothing was saved or published
        if getattr(err, "srm", None) is not None:
            return error(409, str(err))
        return error(400, str(err))
    except TypeError as err:
        return error(400, str(err))
    except LookupError as err:
        return error(404, str(err.args[0]) if err.args else str(err))
    await run_in_threadpool(state.catalog.refresh)
    return json_response(result)


def _environment(body: dict, query: Any) -> str:
    return check_environment(body.get("environment") or query.get("environment") or DEFAULT_ENVIRONMENT)


def _publish(state: ServerState, body: dict, query: Any) -> dict[str, Any]:
    if "flags" not in body:
        raise ValueError(
            "the body needs 'flags' (the UFC flags document) and may have 'bandits' and 'environment'"
        )
    environment = _environment(body, query)
    saved, pub = publishing.publish(
        state.store, body["flags"], body.get("bandits"), environment, note=body.get("note")
    )
    return publication_json(pub)


def _rollback(state: ServerState, body: dict, query: Any) -> dict[str, Any]:
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"'version' must be the integer version to serve again, got {version!r}")
    return publication_json(publishing.rollback(state.store, version, _environment(body, query)))


def versions_json(store: Any) -> dict[str, Any]:
    """Saved versions with where each is served, the environments, and the publish history."""
    now = publishing.current(store)
    served: dict[int, list[str]] = {}
    for env, pub in now.items():
        served.setdefault(pub.version, []).append(env)
    rows = []
    for number in store.configuration_versions():
        saved = store.configuration(number)
        rows.append(
            {
                "version": number,
                "created_at": saved.created_at.isoformat() + "Z",
                "flags": sorted(saved.flags.get("flags", {})),
                "bandits": sorted((saved.bandits or {}).get("bandits", {})),
                "served_in": sorted(served.get(number, [])),
            }
        )
    return {
        "versions": rows,
        "environments": {env: publication_json(p) for env, p in now.items()},
        "history": [publication_json(p) for p in publishing.publications(store)],
    }


def _versions(state: ServerState, body: dict, query: Any) -> dict[str, Any]:
    return versions_json(state.store)


_ROUND_FIELDS = {
    "flag",
    "metric",
    "state",
    "kind",
    "arms",
    "window_days",
    "aggregate",
    "engine",
    "threads",
    "seed",
    "out",
    "environment",
    "publish",
    "allow_srm",
    "new_flag",
}


def _round(state: ServerState, body: dict, query: Any) -> dict[str, Any]:
    from sortition.workflows.daily import daily_round

    unknown = sorted(set(body) - _ROUND_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; a round takes {sorted(_ROUND_FIELDS)}")
    for name in ("flag", "metric", "state"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise ValueError(f"'{name}' is required (a string)")
    environment = _environment(body, query) if body.get("publish", True) else None
    arms = body.get("arms")
    if isinstance(arms, str):
        arms = [a.strip() for a in arms.split(",") if a.strip()]
    window = body.get("window_days")
    for name in ("allow_srm", "new_flag"):
        if not isinstance(body.get(name, False), bool):
            raise ValueError(f"'{name}' must be true or false, got {body[name]!r}")
    if not state.round_lock.acquire(timeout=0.1):
        raise ValueError("another round is running on this server; try again when it is done")
    try:
        run = daily_round(
            state.store._backend.location,
            body["flag"],
            body["metric"],
            state=Path(body["state"]),
            outcome=body.get("kind"),
            arms=arms,
            engine=body.get("engine", "bcf"),
            threads=int(body.get("threads", 1)),
            seed=int(body.get("seed", 0)),
            window=None if window is None else float(window) * 86400.0,
            aggregate=body.get("aggregate"),
            out=body.get("out"),
            publish=environment,
            allow_srm=body.get("allow_srm", False),
            new_flag=body.get("new_flag", False),
        )
    finally:
        state.round_lock.release()
    exp = run.experiment
    result = {
        "flag": body["flag"],
        "created": run.created,
        "round": exp.round_,
        "n_new": run.n_new,
        "n_total": None if run.result is None else run.result.n_total,
        "version": run.configuration_version,
        "environment": environment,
        "state": str(run.state),
        "report": None if run.report is None else str(run.report),
        "arms": list(exp.arms),
    }
    state.rounds[body["flag"]] = result
    return result


async def publish(request: Request) -> Response:
    return await _admin(request, _publish)


async def rollback(request: Request) -> Response:
    return await _admin(request, _rollback)


async def versions(request: Request) -> Response:
    return await _admin(request, _versions)


async def rounds(request: Request) -> Response:
    return await _admin(request, _round)
