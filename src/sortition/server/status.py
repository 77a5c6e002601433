"""The status page at ``/``: plain HTML, no JavaScript. It shows what an operator checks first:
each environment's served version and when it was published, ingestion in the last hour, the
queue, and per flag the latest round this server ran (with its report)."""

from __future__ import annotations

import html
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sortition.server.state import ServerState
from sortition.store.publishing import Publication, publications

_STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
    "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}"
    "th{background:#f4f4f4}.muted{color:#777}"
)


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_status(state: ServerState, history: list[Publication] = ()) -> str:
    e = html.escape
    envs = [
        [
            e(env),
            str(s.version),
            e(s.published_at.isoformat(timespec="seconds") + "Z"),
            e(s.action),
            str(len(s.flag_keys)),
        ]
        for env, s in sorted(state.catalog.environments.items())
    ]
    accepted, rejected = state.metrics.minutes.last_hour()
    stats = state.committer.stats
    rounds = []
    for flag, r in sorted(state.rounds.items()):
        report = "" if not r.get("report") else e(r["report"])
        rounds.append(
            [e(flag), str(r["round"]), f"{r['n_new']:,}", str(r["version"]), e(str(r["environment"])), report]
        )
    error = state.catalog.last_error
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Sortition server</title>"
        f"<style>{_STYLE}</style>"
        "</head><body><h1>Sortition server</h1>"
        + (f"<p><b>Store refresh failing:</b> {e(error)}</p>" if error else "")
        + "<h2>Environments</h2>"
        + _table(
            ["environment", "version", "published", "by", "flags"],
            envs,
            "Nothing is published yet: sortition publish STORE FLAGS.json",
        )
        + "<h2>Ingestion</h2>"
        + _table(
            [
                "last hour: accepted rows",
                "rejected rows",
                "per second",
                "queue depth",
                "deduplicated (since start)",
                "failed commits",
            ],
            [
                [
                    f"{accepted:,}",
                    f"{rejected:,}",
                    f"{accepted / 3600:,.1f}",
                    f"{state.committer.depth:,}",
                    f"{stats.deduplicated:,}",
                    str(stats.failures),
                ]
            ],
            "",
        )
        + "<h2>Rounds</h2>"
        + _table(
            ["flag", "round", "new exposures", "version", "published to", "report"],
            rounds,
            "No round has run on this server yet (sortition round --server URL --key ADMIN_KEY ...)",
        )
        + "<h2>Latest publications</h2>"
        + _table(
            ["#", "environment", "version", "when (UTC)", "by", "note"],
            [
                [
                    str(p.seq),
                    e(p.environment),
                    str(p.version),
                    e(p.published_at.isoformat(timespec="seconds")),
                    e(p.action),
                    e(p.note or ""),
                ]
                for p in reversed(history[-10:])
            ],
            "None yet.",
        )
        + f'<p class="muted">Generated {time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())} UTC. '
        'Metrics: <a href="/metrics">/metrics</a>, API: <a href="/openapi.json">/openapi.json</a>.</p>'
        "</body></html>"
    )


async def status_page(request: Request) -> Response:
    state: ServerState = request.app.state.sortition
    try:
        history = await run_in_threadpool(publications, state.store)
    except Exception:  # noqa: BLE001 - the page still shows what is in memory
        history = []
    return HTMLResponse(render_status(state, history))
