"""CPU cost of the one-step average effect: fit + lift_summary on this checkout beside a baseline checkout.

Each side runs in its own process with its own ``src`` first on the path (``--baseline``: e.g. the main
branch's ``src``), on the same simulated data, one thread; times are process CPU seconds (medians of
``--repeats``), so a busy machine changes them little.

    OMP_NUM_THREADS=1 python benchmarks/one_step_cost.py --baseline /work/main/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = (("sparse", 1000, 3, "binary"), ("gradient", 1000, 2, "continuous"), ("storefront", 7500, 3, "revenue"))

CHILD = r"""
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
from sortition.posterior import fit
from sortition.scenarios import generate
name, n, k, outcome, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
data, _ = generate(name, n, arms=k, outcome=outcome, seed=0)
fits, lifts = [], []
for r in range(repeats):
    t = time.process_time()
    post = fit(data, outcome=outcome, seed=r, progress=False, num_threads=1)
    fits.append(time.process_time() - t)
    t = time.process_time()
    post.lift_summary(0.9)
    lifts.append(time.process_time() - t)
print(json.dumps({"fit": float(np.median(fits)), "lift": float(np.median(lifts))}))
"""


def measure(src: str, case, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, case), str(repeats)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the baseline checkout's src directory")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU seconds (process time, 1 thread, median of {args.repeats}); ours = {ROOT / 'src'}, "
          f"baseline = {args.baseline}")
    print(f"{'case':<32}{'fit ours':>10}{'fit base':>10}{'ratio':>7}{'lift ours':>11}{'lift base':>11}")
    for case in CASES:
        ours, base = measure(str(ROOT / "src"), case, args.repeats), measure(args.baseline, case, args.repeats)
        label = f"{case[0]} n={case[1]} K={case[2]} {case[3]}"
        print(f"{label:<32}{ours['fit']:>10.2f}{base['fit']:>10.2f}{ours['fit'] / base['fit']:>6.2f}x"
              f"{ours['lift'] * 1000:>9.1f}ms{base['lift'] * 1000:>9.1f}ms")


if __name__ == "__main__":
    main()
