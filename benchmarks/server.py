"""The Sortition server under load, on 127.0.0.1: config polls, OFREP evaluations, event ingestion.

Figures (medians over --reps runs):
1. config polls (GET /api/flag-config/v1/config, the conformance flags, gzip) at a fixed offered
   rate (--rate, default 500/s): p50 and p99 latency for 200 answers and for 304 answers
   (If-None-Match), measured from each request's scheduled send time (no coordinated omission);
   and the most polls/s with 8 connections, closed loop;
2. OFREP evaluations per second (POST /ofrep/v1/evaluate/flags/{key}, distinct subjects);
3. events ingested per second into DuckDB and into PostgreSQL (batches of 1,000 distinct events,
   8 connections, --seconds per run), then the store is checked: every acknowledged event stored
   exactly once (zero loss).

Beside each, the floor it is measured against, in the same run: the same bytes served by a bare
uvicorn app (no keys, no ETag) for polls, and ``EventStore.append`` in-process (no HTTP) for ingestion.

Run: python benchmarks/server.py [--reps 3 --seconds 10 --rate 500]    (the long run: --seconds 60)
PostgreSQL is measured when SORTITION_TEST_POSTGRES_URL is set (`. .ci/postgres.sh`).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from sortition.store import EventStore  # noqa: E402
from tests.server.conftest import LiveServer, free_port, prepare  # noqa: E402


# ---- a small keep-alive HTTP/1.1 client (the load generator must not be the bottleneck) -------------
class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def fixed_rate(
    port: int,
    path: str,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    expect: int,
    connections: int = 16,
) -> dict[str, float]:
    """Open-loop requests at ``rate``/s; latency from each request's scheduled time (ms)."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection("127.0.0.1", port).open())
    latencies: list[float] = []
    bad = 0
    start = time.perf_counter() + 0.05
    n = int(rate * seconds)

    async def one(i: int) -> None:
        nonlocal bad
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        con = await pool.get()
        status, _ = await con.request("GET", path, headers)
        latencies.append((time.perf_counter() - scheduled) * 1e3)
        bad += status != expect
        pool.put_nowait(con)

    await asyncio.gather(*(one(i) for i in range(n)))
    while not pool.empty():
        pool.get_nowait().close()
    return {
        "p50": _pct(latencies, 0.5),
        "p99": _pct(latencies, 0.99),
        "bad": bad,
        "achieved": n / (time.perf_counter() - start),
    }


async def closed_loop(port: int, make: object, seconds: float, connections: int = 8) -> float:
    """Requests per second with ``connections`` always busy; ``make(i) -> (method, path, headers, body)``."""
    done = 0
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        con = await Connection("127.0.0.1", port).open()
        i = w
        while time.perf_counter() < end:
            method, path, headers, body = make(i)
            status, _ = await con.request(method, path, headers, body)
            assert status in (200, 304), status
            done += 1
            i += connections
        con.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(connections)))
    return done / (time.perf_counter() - started)


# ---- the runs -------------------------------------------------------------------------------------------
def _event_batches(n_batches: int, size: int) -> tuple[list[bytes], int]:
    stamp = "2024-05-01T12:00:00Z"
    bodies = []
    for b in range(n_batches):
        events = []
        for j in range(size):
            eid = uuid.uuid4().hex
            if j % 2:
                events.append(
                    {
                        "eventId": eid,
                        "subject": f"s{b}-{j}",
                        "metric": "revenue",
                        "value": 1.0,
                        "timestamp": stamp,
                    }
                )
            else:
                events.append(
                    {
                        "eventId": eid,
                        "featureFlag": "checkout",
                        "allocation": "seg-1",
                        "experiment": "checkout-seg-1",
                        "variation": "treatment",
                        "subject": f"s{b}-{j}",
                        "timestamp": stamp,
                        "subjectAttributes": {"country": "FR", "age": 31},
                        "cell": "explore",
                        "propensity": "0.25",
                        "round": "3",
                    }
                )
        bodies.append(json.dumps(events).encode())
    return bodies, n_batches * size


async def ingest(
    port: int, key: str, bodies: list[bytes], size: int, connections: int = 8
) -> tuple[float, int]:
    """POST every body once over ``connections``; -> (events/s, events acknowledged)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    acked = 0
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal acked
        con = await Connection("127.0.0.1", port).open()
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                status, payload = await con.request("POST", "/api/v1/events", headers, body)
                if status == 200:
                    acked += json.loads(payload)["accepted"]
                    break
                await asyncio.sleep(0.05)  # 429: retry the same batch (idempotent)
        con.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return acked / (time.perf_counter() - started), acked


def _get(path: str, headers: dict[str, str]) -> Callable[[int], tuple]:
    return lambda i: ("GET", path, headers, b"")


def _ofrep(key: str) -> Callable[[int], tuple]:
    """OFREP requests for distinct subjects."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def make(i: int) -> tuple:
        context = {"targetingKey": f"u{i}", "country": "US", "age": i % 90}
        body = json.dumps({"context": context}).encode()
        return "POST", "/ofrep/v1/evaluate/flags/new-user-onboarding", headers, body

    return make


def bare_server(doc: bytes, port: int) -> subprocess.Popen:
    """The floor for polls: uvicorn + Starlette returning the same gzipped bytes, nothing else."""
    code = (
        "import sys, uvicorn\n"
        "from starlette.applications import Starlette\n"
        "from starlette.responses import Response\n"
        "from starlette.routing import Route\n"
        "body = open(sys.argv[1], 'rb').read()\n"
        "async def config(request):\n"
        "    return Response(body, headers={'Content-Encoding': 'gzip'}, media_type='application/json')\n"
        "app = Starlette(routes=[Route('/api/flag-config/v1/config', config)])\n"
        "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning', access_log=False)\n"
    )
    path = Path(tempfile.mkdtemp()) / "doc.gz"
    path.write_bytes(doc)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(port)])
    time.sleep(2.0)
    return proc


def run_polls(args: argparse.Namespace, work: Path) -> None:
    import httpx

    location = str(work / "polls.duckdb")
    keys = prepare(location)
    server = LiveServer(location, refresh=2.0).start()
    try:
        path = f"/api/flag-config/v1/config?apiKey={keys.sdk}&sdkName=bench&sdkVersion=1&coreVersion=1"
        first = httpx.get(server.url + path, headers={"Accept-Encoding": "gzip"})
        etag = first.headers["ETag"]
        gz = gzip.compress(first.content, mtime=0)
        h200 = {"Accept-Encoding": "gzip"}
        h304 = {"Accept-Encoding": "gzip", "If-None-Match": etag}
        floor_port = free_port()
        floor = bare_server(gz, floor_port)
        rows: dict[str, list[float]] = {}
        try:
            for _ in range(args.reps):
                for name, port, p, headers, expect in (
                    ("ours 200", server.port, path, h200, 200),
                    ("ours 304", server.port, path, h304, 304),
                    ("bare uvicorn 200", floor_port, "/api/flag-config/v1/config", h200, 200),
                ):
                    r = asyncio.run(fixed_rate(port, p, headers, args.rate, args.poll_seconds, expect))
                    assert r["bad"] == 0, (name, r)
                    rows.setdefault(name + " p50", []).append(r["p50"])
                    rows.setdefault(name + " p99", []).append(r["p99"])
                for name, port, p, headers in (
                    ("ours 200 max", server.port, path, h200),
                    ("ours 304 max", server.port, path, h304),
                    ("bare 200 max", floor_port, "/api/flag-config/v1/config", h200),
                ):
                    rate = asyncio.run(closed_loop(port, _get(p, headers), 3.0))
                    rows.setdefault(name, []).append(rate)
            # last: OFREP evaluations log their exposures, whose commits would disturb the polls above
            for _ in range(args.reps):
                ofrep_rate = asyncio.run(closed_loop(server.port, _ofrep(keys.sdk), 3.0))
                rows.setdefault("ofrep", []).append(ofrep_rate)
        finally:
            floor.kill()
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(
            f"\nconfig polls at {args.rate:.0f} req/s offered, {args.poll_seconds:g} s, "
            f"medians of {args.reps} runs (latency from the scheduled send time, ms)"
        )
        print(f"{'':24}{'p50':>8}{'p99':>8}   {'floor (bare uvicorn) p99':>26}{'ratio':>7}")
        floor_p99 = med["bare uvicorn 200 p99"]
        for kind in ("200", "304"):
            p50, p99 = med[f"ours {kind} p50"], med[f"ours {kind} p99"]
            print(f"{'ours ' + kind:24}{p50:8.2f}{p99:8.2f}   {floor_p99:26.2f}{p99 / floor_p99:7.2f}")
        print(
            f"goal: p99 < 5 ms at 500/s -> 200: {'met' if med['ours 200 p99'] < 5 else 'MISSED'}, "
            f"304: {'met' if med['ours 304 p99'] < 5 else 'MISSED'}"
        )
        print("\nmost polls per second (8 connections, closed loop)")
        print(
            f"  ours 200: {med['ours 200 max']:8.0f}/s   ours 304: {med['ours 304 max']:8.0f}/s   "
            f"bare uvicorn 200: {med['bare 200 max']:8.0f}/s   "
            f"ratio 200/bare {med['ours 200 max'] / med['bare 200 max']:.2f}"
        )
        print(f"\nOFREP evaluations per second (8 connections): {med['ofrep']:8.0f}/s")
    finally:
        server.kill()


def run_ingest(args: argparse.Namespace, work: Path, location: str, label: str) -> None:
    size = 1000
    rates, floors = [], []
    for rep in range(args.reps):
        where = location if label != "DuckDB" else str(work / f"ingest-{rep}.duckdb")
        if label == "PostgreSQL":
            where = _fresh_schema(location)
        keys = prepare(where)
        n_batches = max(1, int(args.target * args.seconds / size))
        bodies, _ = _event_batches(n_batches, size)
        server = LiveServer(where, refresh=2.0).start()
        try:
            rate, acked = asyncio.run(ingest(server.port, keys.ingest, bodies, size))
        finally:
            server.terminate()
            server.kill()
        with EventStore(where) as store:
            counts = store.counts()
            stored = counts["assignment"] + counts["outcome"]
            distinct = len(set(store.assignments()["event_id"]) | set(store.outcomes()["event_id"]))
        assert acked == len(bodies) * size == stored == distinct, (acked, stored, distinct)
        rates.append(rate)
        # the floor: the same events appended in-process through EventStore.append (no HTTP)
        floor_at = str(work / f"floor-{rep}.duckdb") if label == "DuckDB" else _fresh_schema(location)
        events = [json.loads(b) for b in bodies[: max(1, len(bodies) // 4)]]
        with EventStore(floor_at) as store:
            started = time.perf_counter()
            for batch in events:
                store.append(
                    assignments=[e for e in batch if "featureFlag" in e],
                    outcomes=[e for e in batch if "metric" in e],
                )
            floors.append(sum(len(b) for b in events) / (time.perf_counter() - started))
    med, floor = statistics.median(rates), statistics.median(floors)
    print(
        f"\ningestion into {label}: {len(bodies) * size:,} events per run "
        f"({args.seconds:g} s at the target), "
        f"medians of {args.reps} runs"
    )
    print(
        f"  ours (HTTP, group commit): {med:10,.0f} events/s   floor (EventStore.append in-process): "
        f"{floor:10,.0f} events/s   ratio {med / floor:.2f}"
    )
    print(
        "  zero loss: every acknowledged event stored exactly once (checked by id and count); "
        "goal 20,000/s: "
        f"{'met' if med >= 20000 else 'MISSED'}"
    )


def _fresh_schema(url: str) -> str:
    import psycopg
    from urllib.parse import quote

    schema = "sortition_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="offered config polls per second")
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="ingestion run length at the target rate")
    parser.add_argument(
        "--target", type=float, default=20000.0, help="events/s the ingestion run is sized for"
    )
    parser.add_argument("--skip", choices=["polls", "ingest"], action="append", default=[])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="sortition-bench-"))
    print(f"Sortition server benchmark ({os.cpu_count()} CPUs), loopback only")
    if "polls" not in args.skip:
        run_polls(args, work)
    if "ingest" not in args.skip:
        run_ingest(args, work, str(work / "ingest.duckdb"), "DuckDB")
        pg = os.environ.get("SORTITION_TEST_POSTGRES_URL")
        if pg:
            run_ingest(args, work, pg, "PostgreSQL")
        else:
            print(
                "\nPostgreSQL: skipped (SORTITION_TEST_POSTGRES_URL is not set; "
                "`. .ci/postgres.sh` starts one)"
            )


if __name__ == "__main__":
    main()
