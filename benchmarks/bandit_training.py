"""Bandit training at scale: sufficient statistics in the store (SQL) against the in-memory path.

The store is filled straight with SQL (``INSERT ... SELECT`` over a generated range: no Python
dicts), with ``--n`` decisions of 4 actions (numeric age/visits, categorical country/device, each
sometimes missing; action price/color) and a reward outcome for 70% of them. Then, each in a fresh
subprocess so peak memory (peak RSS) is its own:

* ``sql``: ``store_statistics`` + ``model_from_statistics`` (what ``sortition bandit train`` runs);
* ``in-memory``: ``train_bandit(BanditEvents.from_frame(store.bandit_rewards(...)))`` (today's path
  before this change), only up to ``--max-in-memory`` events: beyond it the events do not fit the
  machine (the figure is then extrapolated linearly from the largest size measured, and says so).

Run: python benchmarks/bandit_training.py [--sizes 100000 1000000 10000000 --reps 3]
     [--postgres postgresql://...]   (PostgreSQL: the same, on a server you provide)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _rand(dialect: str, salt: int) -> str:
    """A deterministic pseudo-random number in [0, 1) from the row number i (same on every run)."""
    if dialect == "duckdb":
        return f"((hash(i * 16 + {salt}) % 1000003) / 1000003.0)"
    return f"(('x' || substr(md5((i * 16 + {salt})::text), 1, 7))::bit(28)::int / 268435456.0)"


def fill_sql(dialect: str, n: int) -> list[str]:
    """INSERT statements generating ``n`` decisions and their outcomes in the store's tables."""
    r = lambda s: _rand(dialect, s)  # noqa: E731
    rows = f"range({n}) t(i)" if dialect == "duckdb" else f"generate_series(0, {n - 1}) AS t(i)"
    action = f"CAST(floor({r(0)} * 4) AS INTEGER)"
    num = lambda x: f"CAST({x} AS TEXT)"  # noqa: E731
    ts = (
        "TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i)"
        if dialect == "duckdb"
        else "TIMESTAMP '2024-01-01 00:00:00' + i * INTERVAL '1 second'"
    )
    decisions = f"""
INSERT INTO bandit_events (event_id, flag_key, bandit_key, subject, action, action_probability,
    optimality_gap, model_version, ts, subject_numeric_attributes, subject_categorical_attributes,
    action_numeric_attributes, action_categorical_attributes, meta_data, offered_actions)
SELECT 'e' || {num("i")}, 'flag', 'bandit', 's' || {num("i")}, 'action_' || {num("a")},
       0.1 + 0.8 * {r(1)}, 0.0, '1', {ts},
       '{{' || CASE WHEN {r(2)} < 0.9 THEN '"age":' || {num(f"round(18 + 50 * {r(3)})")} ELSE '' END
            || CASE WHEN {r(2)} < 0.9 AND {r(4)} < 0.9 THEN ',' ELSE '' END
            || CASE WHEN {r(4)} < 0.9 THEN '"visits":' || {num(f"floor(10 * {r(5)})")} ELSE '' END || '}}',
       CASE WHEN {r(6)} < 0.9 THEN '{{"country":"' || (CASE WHEN {r(7)} < 0.5 THEN 'US' WHEN {r(7)} < 0.8
            THEN 'UK' ELSE 'DE' END) || '","device":"' || (CASE WHEN {r(8)} < 0.6 THEN 'mobile' ELSE 'desktop' END)
            || '"}}' ELSE '{{"device":"mobile"}}' END,
       '{{"price":' || {num("10 + 5 * a")} || '}}',
       '{{"color":"' || (CASE a WHEN 0 THEN 'red' WHEN 1 THEN 'blue' WHEN 2 THEN 'green' ELSE 'red' END) || '"}}',
       NULL, NULL
FROM (SELECT i, {action} AS a FROM {rows}) g
"""
    outcomes = f"""
INSERT INTO outcomes (event_id, subject, metric, value, ts)
SELECT 'o' || {num("i")}, 's' || {num("i")}, 'reward', {r(9)} + 0.1 * (CASE WHEN {r(0)} < 0.25 THEN 1 ELSE 0 END),
       {ts} + INTERVAL '1 second'
FROM {rows} WHERE {r(10)} < 0.7
"""
    return [decisions, outcomes]


def fill(location: str, n: int) -> float:
    from sortition.store import EventStore

    t0 = time.perf_counter()
    with EventStore(location) as store:
        with store._backend.transaction() as tx:
            for statement in fill_sql(store.dialect, n):
                tx.execute(statement)
        if store.dialect == "postgresql":
            with store._backend.transaction() as tx:
                tx.execute("ANALYZE bandit_events")
                tx.execute("ANALYZE outcomes")
    return time.perf_counter() - t0


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(path: str, location: str) -> None:
    """Train once by ``path`` ("sql" or "in-memory") and print wall time, max RSS and a checksum."""
    import numpy as np

    from sortition.learning import train_bandit
    from sortition.learning.events import BanditEvents
    from sortition.learning.sufficient import model_from_statistics, store_statistics
    from sortition.store import EventStore

    base = _peak_mb()
    t0 = time.perf_counter()
    with EventStore(location) as store:
        if path == "sql":
            model = model_from_statistics(store_statistics(store, "reward"), l2=1.0)
        else:
            model = train_bandit(BanditEvents.from_frame(store.bandit_rewards("reward")), l2=1.0)
    wall = time.perf_counter() - t0
    intercepts = [c.intercept for c in model.coefficients.values()]
    print(
        json.dumps(
            {
                "wall": wall,
                "max_rss_mb": _peak_mb(),
                "import_rss_mb": base,
                "n": model.n_events,
                "intercepts": [float(x) for x in np.round(intercepts, 9)],
            }
        )
    )


def _run(path: str, location: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", path, "--store", location],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    p.add_argument("--reps", type=int, default=3, help="repeats per size (1 at sizes >= 1M)")
    p.add_argument(
        "--max-in-memory",
        type=int,
        default=1_000_000,
        help="largest size the in-memory path is run at (it needs ~GBs per million events)",
    )
    p.add_argument("--postgres", help="a PostgreSQL URL to benchmark instead of DuckDB files")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.store)
        return
    import duckdb

    print(
        f"python {sys.version.split()[0]}, duckdb {duckdb.__version__}, {os.cpu_count()} cpus; "
        "wall time median over repeats, peak memory = peak RSS (VmHWM) of the training process"
    )
    print(
        f"{'events':>10} {'path':>9} {'wall s':>8} {'max RSS MB':>10} | "
        f"{'time mem/sql':>12} {'RSS mem/sql':>11}"
    )
    last_mem: tuple[int, dict] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            if a.postgres:
                location = a.postgres
                from sortition.store import EventStore

                with EventStore(location) as store, store._backend.transaction() as tx:
                    tx.execute("DELETE FROM bandit_events")
                    tx.execute("DELETE FROM outcomes")
            else:
                location = str(Path(tmp) / f"events-{n}.duckdb")
            fill_s = fill(location, n)
            reps = 1 if n >= 1_000_000 else a.reps
            sql_runs = [_run("sql", location) for _ in range(reps)]
            sql = {
                "wall": statistics.median(r["wall"] for r in sql_runs),
                "max_rss_mb": max(r["max_rss_mb"] for r in sql_runs),
            }
            print(
                f"{n:>10} {'sql':>9} {sql['wall']:8.2f} {sql['max_rss_mb']:10.0f} | (store filled by SQL in "
                f"{fill_s:.1f} s; interpreter + imports {sql_runs[0]['import_rss_mb']:.0f} MB)"
            )
            if n <= a.max_in_memory:
                mem_runs = [_run("in-memory", location) for _ in range(reps)]
                mem = {
                    "wall": statistics.median(r["wall"] for r in mem_runs),
                    "max_rss_mb": max(r["max_rss_mb"] for r in mem_runs),
                }
                same = max(abs(x - y) for x, y in zip(mem_runs[0]["intercepts"], sql_runs[0]["intercepts"]))
                last_mem = (n, mem)
                print(
                    f"{n:>10} {'in-memory':>9} {mem['wall']:8.2f} {mem['max_rss_mb']:10.0f} | "
                    f"{mem['wall'] / sql['wall']:11.1f}x {mem['max_rss_mb'] / sql['max_rss_mb']:10.1f}x  "
                    f"(max |intercept difference| {same:.1e})"
                )
            elif last_mem is not None:
                m, mem = last_mem
                f = n / m
                wall, rss = mem["wall"] * f, mem["max_rss_mb"] * f
                print(
                    f"{n:>10} {'in-memory':>9} {wall:7.0f}* {rss:9.0f}* | {wall / sql['wall']:11.1f}x "
                    f"{rss / sql['max_rss_mb']:10.1f}x  (* not run: extrapolated linearly from {m} events)"
                )


if __name__ == "__main__":
    main()
