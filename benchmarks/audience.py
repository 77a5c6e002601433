"""Scoring whole audiences: Sortition's columnar call vs its single-call loop vs Eppo's per-call loop.

Same configuration (the bundled Eppo test flags and bandit models), same subjects, same process,
one core (OMP and Arrow threads pinned to 1), CPU time of this process (on a shared machine wall
time measures the other processes too). Cold: fresh clients, distinct subjects, events built
(the columnar call builds its Arrow event tables; the loops log to a no-op logger), no dedup hits.
Per-call loops over 1M subjects sample the first ``--loop-sample`` subjects (said in the output).
Peak memory: Python/numpy (tracemalloc) plus Arrow's pool, during the in-memory call, input excluded
(it holds the n-row result and events); "stream": peak RSS of a fresh process scoring the audience
from Parquet into Parquet in 100,000-row batches (``sortition score``'s path), bounded by the batch.
Dask: ``sortition.workflows.score`` over the audience as Parquet on a LocalCluster of 1 and 2
worker processes (cluster started before the clock), output identical to the single process.

    python benchmarks/audience.py [--sizes 100000 1000000] [--repeats 3] [--loop-sample 100000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from serving import ACTIONS, BANDIT_FLAG, FLAG, UFC, NoopLogger, eppo_client  # noqa: E402
from sortition.serving import Client, Configuration  # noqa: E402

pa.set_cpu_count(1)
pa.set_io_thread_count(1)


def audience(n: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    countries = np.array(["US", "Canada", "Mexico", "France", "UK", "Germany", "Japan"])
    email_kind = rng.integers(0, 3, n)
    emails = np.where(email_kind == 0, "a@mycompany.com",
                      np.char.add(np.char.add("u", ids.astype(str)), np.where(email_kind == 1, "@example.com",
                                                                                "@gmail.com")))
    return pa.table({
        "subject": pa.array(np.char.add("user-", np.char.zfill(ids.astype(str), 7))),
        "country": pa.array(countries[rng.integers(0, len(countries), n)]),
        "email": pa.array(emails),
        "age": pa.array(rng.integers(18, 81, n)),
        "account_age": pa.array(np.round(rng.uniform(0, 10, n), 2)),
        "gender_identity": pa.array(np.array(["female", "male", "nonbinary"])[rng.integers(0, 3, n)]),
    })


def as_items(table: pa.Table, limit: int) -> list[tuple[str, dict]]:
    rows = table.slice(0, limit).to_pylist()
    return [(r.pop("subject"), r) for r in rows]


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median seconds, peak MiB of Python/numpy + Arrow allocations during one run)."""
    seconds = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.process_time()
        fn()
        seconds.append(time.process_time() - t0)
    pool = pa.default_memory_pool()
    gc.collect()
    base_arrow = pool.bytes_allocated()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrow_peak = max(pool.max_memory() - base_arrow, 0) if pool.max_memory() else 0
    return statistics.median(seconds), (peak + arrow_peak) / 2**20


def dask_times(table: pa.Table, flags: str, models: str | None, flag: str, workers: list[int]) -> dict[int, float]:
    try:
        from dask.distributed import LocalCluster
    except ImportError:
        return {}
    from sortition.workflows.score import ScoreJob, Source, score_audience

    actions = ACTIONS if models else None
    job = ScoreJob(flags, flag, "subject", "default", models, actions)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audience.parquet"
        pq.write_table(table, path, row_group_size=100_000)
        single = Path(tmp) / "single.parquet"
        score_audience(job, Source(path, batch_rows=100_000), single)
        for n in workers:
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address="127.0.0.1:0") as cluster:
                target = Path(tmp) / f"dask{n}.parquet"
                t0 = time.perf_counter()
                score_audience(job, Source(path, batch_rows=100_000), target, scheduler=cluster.scheduler_address)
                out[n] = time.perf_counter() - t0
                assert pq.read_table(target).equals(pq.read_table(single)), "Dask output differs from single process"
    return out


_STREAM = """
import sys
sys.path.insert(0, {src!r})
from pathlib import Path
from sortition.workflows.score import ScoreJob, Source, score_audience
job = ScoreJob(open({flags!r}).read(), {flag!r}, "subject", "default",
               None if {models!r} is None else open({models!r}).read(), {actions!r})
score_audience(job, Source(Path({path!r}), batch_rows=100_000), Path({out!r}))
# VmHWM: this process's own peak (ru_maxrss would inherit the parent's across fork and exec)
print([line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def stream_peak(table: pa.Table, flags: Path, models: Path | None, flag: str) -> float:
    """Peak RSS (MiB) of a fresh process streaming the audience (Parquet) through ``sortition score``'s
    workflow: bounded by the batch, not the audience."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audience.parquet"
        pq.write_table(table, path, row_group_size=100_000)
        code = _STREAM.format(src=str(ROOT / "src"), flags=str(flags), flag=flag,
                              models=None if models is None else str(models),
                              actions=None if models is None else ACTIONS, path=str(path), out=str(Path(tmp) / "o.parquet"))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        return int(done.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-sample", type=int, default=100_000)
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    import logging

    logging.getLogger("sortition.serving").setLevel(logging.ERROR)
    flags = (UFC / "flags-v1.json").read_text()
    bandit_flags = (UFC / "bandit-flags-v1.json").read_text()
    models = (UFC / "bandit-models-v1.json").read_text()
    flag_cfg = Configuration.from_json(flags)
    bandit_cfg = Configuration.from_json(bandit_flags, models)
    eppo_flags = eppo_client(flags.encode(), None)
    eppo_bandits = eppo_client(bandit_flags.encode(), models.encode())

    print(f"Audience scoring benchmark: one core, median of {args.repeats} columnar runs, "
          "microseconds per subject, cold (events built, no dedup hits)")
    from sortition.serving import md5_batch

    print("shard MD5: " + ("numba's lane-parallel kernel (sortition[fast]; compiled during the warm-up)"
                           if md5_batch.compiled() is not None else "numpy (numba not installed)"))
    header = (f"{'kind':7s} {'subjects':>9s} {'columnar':>9s} {'single':>8s} {'eppo':>8s} {'eppo/col':>9s} "
              f"{'single/col':>10s} {'peak MiB':>9s} {'stream MiB':>10s} {'dask 1w s':>9s} {'dask 2w s':>9s}  loops on")
    print(header)
    warm = audience(5000)  # imports and kernel set-up outside the timing
    Client(flag_cfg).assign_table(FLAG, warm, default="default", with_events=True)
    Client(bandit_cfg).bandit_table(BANDIT_FLAG, warm, ACTIONS, default="default", with_events=True)
    for n in args.sizes:
        table = audience(n)
        sample = min(n, args.loop_sample)
        items = as_items(table, sample)
        for kind in ("flags", "bandits"):
            if kind == "flags":
                def columnar():
                    Client(flag_cfg, NoopLogger()).assign_table(FLAG, table, default="default", with_events=True)

                def single():
                    ga = Client(flag_cfg, NoopLogger()).get_assignment
                    for k, a in items:
                        ga(FLAG, k, a, "default")

                def eppo():
                    es = eppo_flags.get_string_assignment
                    for k, a in items:
                        es(FLAG, f"{k}-{run[0]}", a, "default")
            else:
                def columnar():
                    Client(bandit_cfg, NoopLogger()).bandit_table(BANDIT_FLAG, table, ACTIONS, default="default",
                                                                  with_events=True)

                def single():
                    gb = Client(bandit_cfg, NoopLogger()).get_bandit_action
                    for k, a in items:
                        gb(BANDIT_FLAG, k, a, ACTIONS, "default")

                def eppo():
                    eb = eppo_bandits.get_bandit_action
                    for k, a in items:
                        eb(BANDIT_FLAG, f"{k}-{run[0]}", a, ACTIONS, "default")
            run = [0]
            col_s, peak = timed(columnar, args.repeats)
            t0 = time.process_time()
            single()
            single_us = (time.process_time() - t0) / sample * 1e6
            eppo_us = float("nan")
            if eppo_flags is not None:
                run[0] += 1  # fresh subject keys: Eppo's dedup cache never hits
                t0 = time.process_time()
                eppo()
                eppo_us = (time.process_time() - t0) / sample * 1e6
            col_us = col_s / n * 1e6
            dask = {} if args.no_dask else dask_times(table, flags if kind == "flags" else bandit_flags,
                                                      None if kind == "flags" else models,
                                                      FLAG if kind == "flags" else BANDIT_FLAG, [1, 2])
            stream = stream_peak(table, UFC / ("flags-v1.json" if kind == "flags" else "bandit-flags-v1.json"),
                                 None if kind == "flags" else UFC / "bandit-models-v1.json",
                                 FLAG if kind == "flags" else BANDIT_FLAG)
            loops = f"{sample:,} sampled" if sample < n else "all"
            print(f"{kind:7s} {n:9,d} {col_us:9.3f} {single_us:8.2f} {eppo_us:8.2f} {eppo_us / col_us:8.1f}x "
                  f"{single_us / col_us:9.1f}x {peak:9.1f} {stream:10.0f} {dask.get(1, float('nan')):9.2f} "
                  f"{dask.get(2, float('nan')):9.2f}  {loops}", flush=True)
    print("(eppo/col > 1: the columnar call is faster than Eppo's per-call loop; dask: seconds for the whole "
          "audience through sortition.workflows.score, output checked identical to the single process)")


if __name__ == "__main__":
    main()
