"""Average-effect (and segment) interval coverage on the held-out calibration scenarios, old vs one-step.

Each task is one experiment of ``sortition calibrate``'s sweep (the same simulated data,
:func:`sortition.workflows.calibrate.simulate_data`; the same BCF fit, one thread). From that one fit it
scores, against the mean of the true effects over the sample's visitors:

- ``plug-in``: quantiles of the mean over visitors of the posterior contrast draws (main before the
  one-step estimate: ``mean_contrasts``);
- ``one-step``: ``Posterior.average_effects`` (AIPW residual term with a Bayesian bootstrap of the
  residuals only; what ``lift_summary``, the loop's lifts and calibrate score now);
- ``no-boot``: the one-step correction without the bootstrap (posterior spread only);
- ``pate``: a Bayesian bootstrap of the whole per-visitor score (effect + residual), a population-style
  interval.

z = (mean - truth) / sd per effect; coverage of the 80% / 90% equal-tailed intervals; SEs are
cluster-robust over experiments (effects of one experiment share its data). Per-task rows are written to
``--out`` (JSON lines) as they finish, so a rerun continues. CPU seconds per fit (process time, one
thread) are reported too.

    OMP_NUM_THREADS=1 python benchmarks/average_effect_coverage.py --seeds 24 --out heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.posterior import fit  # noqa: E402
from sortition.scenarios.user import resolve_scenarios  # noqa: E402
from sortition.workflows.calibrate import MIN_SEGMENT_SHARE, SEGMENT_COLUMNS, simulate_data, sweep_tasks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("plug-in", "one-step", "no-boot", "pate")


def _pate(post, mask: np.ndarray) -> np.ndarray:
    """(S, K-1) Bayesian bootstrap of the per-visitor one-step score tau + sign * e (measurement only)."""
    rows = np.flatnonzero(mask)
    tau = post.contrast_draws()[rows].astype(np.float64)  # (m, S, K-1)
    arm = post.data.arm_index[rows]
    sign = (arm[:, None] == np.arange(1, post.n_arms)[None, :]).astype(float) - (arm == 0)[:, None]
    phi = tau + post.residuals["contrast"][rows][:, :, None] * sign[:, None, :]
    g = np.random.default_rng([int(post.info["seed"]), 99]).standard_exponential(phi.shape[:2])
    return np.einsum("ms,msk->sk", g / g.sum(axis=0), phi)


def _no_boot(post, mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask)
    arm = post.data.arm_index[rows]
    sign = (arm[:, None] == np.arange(1, post.n_arms)[None, :]).astype(float) - (arm == 0)[:, None]
    return post.segment_mean_contrasts(mask) + post.residuals["contrast"][rows].T.astype(float) @ sign / rows.size


def score(draws: np.ndarray, truth: np.ndarray) -> list[list[float]]:
    """Per effect: [z, covered at 80%, covered at 90%]; draws (S, m), truth (m,)."""
    z = (draws.mean(axis=0) - truth) / draws.std(axis=0)
    out = [z]
    for lv in (0.8, 0.9):
        lo, hi = np.quantile(draws, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
        out.append(((lo <= truth) & (truth <= hi)).astype(float))
    return np.column_stack(out).tolist()


def run_one(task) -> dict:
    data, truth, visitors, _ = simulate_data(task)
    t0 = time.process_time()
    post = fit(data, outcome=task.outcome, seed=task.seed, progress=False, num_threads=1)
    cpu_fit = time.process_time() - t0
    t0 = time.process_time()
    one = post.average_effects()
    cpu_avg = time.process_time() - t0
    everyone = np.ones(post.n, dtype=bool)
    avg_truth = truth.mean(axis=0)
    out = {"task": task.key, "scenario": task.scenario, "design": "adaptive" if task.adaptive else "uniform",
           "outcome": task.outcome, "arms": task.arms, "seed": task.seed, "cpu_fit": cpu_fit, "cpu_avg": cpu_avg,
           "control": float((data.arm_index == 0).mean()),
           "average": {"plug-in": score(post.mean_contrasts(), avg_truth), "one-step": score(one, avg_truth),
                       "no-boot": score(_no_boot(post, everyone), avg_truth),
                       "pate": score(_pate(post, everyone), avg_truth)}}
    masks = [(visitors[c] == v).to_numpy() for c in SEGMENT_COLUMNS for v in visitors[c].dropna().unique()]
    masks = [m for m in masks if m.mean() >= MIN_SEGMENT_SHARE]
    seg = {"plug-in": [], "one-step": []}
    for m in masks:
        seg["plug-in"] += score(post.segment_mean_contrasts(m), truth[m].mean(axis=0))
        seg["one-step"] += score(post.average_effects(m), truth[m].mean(axis=0))
    out["segment"] = seg
    return out


def _cluster(values: list[np.ndarray]) -> tuple[float, float]:
    """(pooled mean, cluster-robust SE) of per-experiment arrays."""
    sums = np.array([v.sum() for v in values])
    counts = np.array([len(v) for v in values], dtype=float)
    mean = sums.sum() / counts.sum()
    m = len(values)
    se = np.sqrt(m / (m - 1) * np.sum((sums - mean * counts) ** 2)) / counts.sum() if m > 1 else float("nan")
    return float(mean), float(se)


def table(rows: list[dict], kind: str, methods, by) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        for key in by(r):
            groups.setdefault(key, []).append(r)
    print(f"{kind:<9}{'group':<30}{'method':<10}{'exps':>5}{'mean z':>8}{'RMS z':>7}"
          f"{'cov 80 (SE)':>14}{'cov 90 (SE)':>14}")
    for key in sorted(groups):
        for method in methods:
            s = [np.asarray(r[kind][method]) for r in groups[key] if len(r[kind][method])]
            if not s:
                continue
            allz = np.concatenate([a[:, 0] for a in s])
            c80, e80 = _cluster([a[:, 1] for a in s])
            c90, e90 = _cluster([a[:, 2] for a in s])
            print(f"{'':<9}{'/'.join(map(str, key)):<30}{method:<10}{len(s):>5}{allz.mean():>+8.2f}"
                  f"{np.sqrt((allz**2).mean()):>7.2f}{f'{c80:.1%} ({e80:.1%})':>14}{f'{c90:.1%} ({e90:.1%})':>14}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="gradient,sparse,loyalty")
    parser.add_argument("--scenario-file", default=str(ROOT / "docs/examples/scenarios.py"))
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", default="average_effect_coverage.jsonl")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    out = Path(args.out)
    done = {json.loads(line)["task"]: json.loads(line) for line in out.read_text().splitlines()} if out.exists() else {}
    worlds = resolve_scenarios(args.scenarios.split(","), [args.scenario_file])
    tasks = [t for t in sweep_tasks(worlds, [1000], [2, 3], ["continuous", "binary"], [False, True],
                                    args.first_seed + args.seeds) if t.seed >= args.first_seed]
    if not args.report_only:
        with out.open("a") as f:
            for i, task in enumerate(t for t in tasks if t.key not in done):
                r = run_one(task)
                done[task.key] = r
                f.write(json.dumps(r) + "\n")
                f.flush()
                if i % 20 == 0:
                    print(f"  {i} tasks run, {len(done)} done", file=sys.stderr, flush=True)
    rows = [done[t.key] for t in tasks if t.key in done]
    print(f"{len(rows)} experiments ({args.scenarios}; n=1000; K=2,3; continuous+binary; uniform+adaptive; "
          f"seeds {args.first_seed}..{args.first_seed + args.seeds - 1})")
    table(rows, "average", METHODS, lambda r: [("all",), (r["design"],)])
    table(rows, "average", ("plug-in", "one-step"),
          lambda r: [(r["scenario"], r["design"], r["outcome"])])
    table(rows, "segment", ("plug-in", "one-step"), lambda r: [("all",), (r["design"],)])
    fit_cpu = np.median([r["cpu_fit"] for r in rows])
    avg_cpu = np.median([r["cpu_avg"] for r in rows])
    print(f"CPU per fit (process time, 1 thread, median): fit {fit_cpu:.2f} s; one-step average effect "
          f"{avg_cpu * 1000:.1f} ms more ({avg_cpu / fit_cpu:.1%} of the fit)")


if __name__ == "__main__":
    main()
