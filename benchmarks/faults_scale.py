"""Large inputs: ``sortition analyze --engine stratified`` at 1M..10M rows (issue 13 §8).

Writes a Parquet file of n visitors (3 arms, revenue outcome, categorical covariates country/device/plan
and a numeric age), then runs the CLI on it in a subprocess, the way a user does, and reports wall time
and the child's peak memory (max RSS, imports included). There is no peer here: the figure to beat is
the goal (10M rows in under 2 minutes and under 2 GB) and the same command on an older checkout
(``--python``/``--src`` of that checkout).

    python benchmarks/faults_scale.py                      # 1M and 10M rows, 1 repeat
    python benchmarks/faults_scale.py --sizes 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def make_data(n: int, path: Path, seed: int = 0) -> None:
    """n visitors: arm, revenue y, country (8), device (3), plan (4), age; effects vary by country."""
    rng = np.random.default_rng(seed)
    country = rng.integers(0, 8, n).astype(np.int8)
    device = rng.integers(0, 3, n).astype(np.int8)
    plan = rng.integers(0, 4, n).astype(np.int8)
    arm = rng.integers(0, 3, n).astype(np.int8)
    rate = 0.05 + 0.01 * (arm == 1) + 0.02 * ((arm == 2) & (country < 3))
    converted = rng.random(n) < rate
    y = np.where(converted, rng.lognormal(3.0, 0.5, n), 0.0)
    frame = pd.DataFrame({
        "arm": pd.Categorical.from_codes(arm, ["control", "a", "b"]),
        "y": y,
        "country": pd.Categorical.from_codes(country, [f"c{i}" for i in range(8)]),
        "device": pd.Categorical.from_codes(device, ["mobile", "desktop", "tablet"]),
        "plan": pd.Categorical.from_codes(plan, ["free", "basic", "pro", "team"]),
        "age": rng.integers(18, 80, n).astype(np.int16),
    })
    frame.to_parquet(path, index=False)


def run_once(python: str, src: Path, data: Path, out: Path, timeout: float) -> tuple[float, float, int, str]:
    """(seconds, peak GB, exit code, last output line) of one ``sortition analyze`` run."""
    code = ("import resource, runpy, sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['sortition'] + sys.argv[2:]\n"
            "try:\n    runpy.run_module('sortition', run_name='__main__')\n"
            "finally:\n    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    cmd = [python, "-c", code, str(src), "analyze", str(data), "--engine", "stratified", "--kind", "revenue",
           "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "120"})
    seconds = time.perf_counter() - t0
    peak = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_KB")]
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    last = next((line for line in reversed(tail) if not line.startswith("PEAK_KB")), "")
    return seconds, (peak[0] / 1024**2 if peak else float("nan")), proc.returncode, last[:160]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the checkout to run")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="that checkout's src folder")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    print(f"{'rows':>12} {'seconds':>9} {'peak GB':>8}  goal (10M rows): < 120 s, < 2 GB   [{args.src}]")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            data = Path(tmp) / f"rows-{n}.parquet"
            make_data(n, data)
            runs = [run_once(args.python, args.src, data, Path(tmp) / "out", args.timeout) for _ in range(args.repeats)]
            failed = [r for r in runs if r[2] != 0]
            if failed:
                print(f"{n:>12,} failed (exit {failed[0][2]}): {failed[0][3]}")
                continue
            seconds = statistics.median(r[0] for r in runs)
            peak = statistics.median(r[1] for r in runs)
            print(f"{n:>12,} {seconds:>9.1f} {peak:>8.2f}")
    print("child peak RSS of this parent:", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, "MB")


if __name__ == "__main__":
    main()
