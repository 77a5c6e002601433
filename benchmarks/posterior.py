"""Posterior fit benchmark: Sortition vs raw stochtree vs pytyche (when installed), same data and settings.

Data: scenario "two_segments" (pytyche's quick start: 40% responders, conversion 0.08 -> 0.18), 2 arms,
binary outcome, recorded propensities. Every engine gets the same encoded covariates, the same forest
sizes (100 prognostic / 50 effect trees), 10 grow-from-root sweeps, no extra burn-in, 100 retained draws,
and 2 threads where it has a setting for it. Each run is its own subprocess, so peak memory (max RSS,
imports included) is per engine. Also: Sortition alone on 100,000 visitors x 3 arms, revenue.

    python benchmarks/posterior.py                 # sizes 800, 5000, 50000 + the 100k revenue run
    python benchmarks/posterior.py --sizes 800 --repeats 3 --no-large
    python benchmarks/posterior.py --peer-python /path/to/venv/bin/python   # where pytyche is installed

Engines sortition-cold-r2 / sortition-warm-r2: a loop round >= 2 (the previous round fitted 2/3 of the
visitors), refit cold vs warm-started from the previous fit's forests; only the second fit is timed, in
wall and CPU seconds (``time.process_time``: every thread's). --r2 runs just these two, side by side:

    python benchmarks/posterior.py --r2 --sizes 1500 4500 --repeats 3 --outcomes binary continuous revenue \
        --threads 1 --warm-burnin 10 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = dict(num_trees_mu=100, num_trees_tau=50, num_gfr=10, draws=100)
THREADS = 2

CHILD = r'''
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
from scipy.stats import norm
sys.path.insert(0, sys.argv[1] + "/src")
from sortition.scenarios import generate
engine, n, seed, scenario, k, outcome = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7]
T = json.loads(sys.argv[8]); threads = int(sys.argv[9]); warm_burnin = int(sys.argv[10]); warm_draws = int(sys.argv[11])
data, truth = generate(scenario, n, arms=k, outcome=outcome, seed=seed)
tau_true = truth.contrasts
x = data.design_matrix()
t0, c0 = time.perf_counter(), time.process_time()
if engine in ("sortition", "sortition-cold-r2", "sortition-warm-r2"):
    from sortition.posterior import fit
    start = None
    if engine != "sortition":  # a round >= 2: the same n visitors, 2/3 of them already fitted last round
        from sortition.data import ExperimentData
        roles = {k: v for k, v in data.columns.items() if v is not None}
        first = ExperimentData.from_frame(data.frame().iloc[: 2 * n // 3].reset_index(drop=True), arms=data.arms,
                                          covariates=list(data.covariate_names), **roles)
        previous = fit(first, outcome=outcome, seed=seed + 1, progress=False, num_threads=threads, **T)
        start = previous.warm_start if engine == "sortition-warm-r2" else None
        t0, c0 = time.perf_counter(), time.process_time()
    post = fit(data, outcome=outcome, seed=seed, progress=False, num_threads=threads, warm_start=start,
               warm_burnin=warm_burnin, **(T if start is None else dict(T, draws=warm_draws)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert (start is not None) == (post.info["warm_start"] == "warm"), post.info["warm_start"]
    cate, (lo, hi), (lo90, hi90) = post.cate(), post.cate_interval(0.8), post.cate_interval(0.9)
    # burn-in check: the first 10 retained draws beside the second half (a chain still moving shows a drift);
    # ATE: the average effect's draws, in posterior sds; CATE: rms per-visitor shift over rms posterior sd
    draws = np.asarray(post.contrast_draws(), dtype=np.float64)  # (n, S, K-1)
    ate = draws.mean(axis=0)  # (S, K-1)
    half = draws.shape[1] // 2
    early, late = draws[:, :10].mean(axis=1), draws[:, half:]
    drift_ate = float(np.max(np.abs(ate[:10].mean(axis=0) - ate[half:].mean(axis=0)) / ate[half:].std(axis=0)))
    drift_cate = float(np.sqrt(((early - late.mean(axis=1)) ** 2).mean() / (late.var(axis=1)).mean()))
elif engine == "stochtree":
    from stochtree import BCFModel, OutcomeModel
    m = BCFModel()
    z = data.arm_index.astype(float)
    m.sample(X_train=x, Z_train=z, y_train=data.outcome, propensity_train=data.propensity,
             num_gfr=T["num_gfr"], num_burnin=0, num_mcmc=T["draws"],
             general_params={"random_seed": seed, "num_threads": threads,
                             "outcome_model": OutcomeModel(outcome="binary", link="probit")},
             prognostic_forest_params={"num_trees": T["num_trees_mu"]},
             treatment_effect_forest_params={"num_trees": T["num_trees_tau"]})
    d = norm.cdf(m.mu_hat_train + m.tau_hat_train) - norm.cdf(m.mu_hat_train)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    d = d[:, :, None]
elif engine.startswith("pytyche"):
    import pandas as pd
    import pytyche
    from pytyche.contracts import ObservedExperimentData, VariantData
    from pytyche.analysis._contrasts import contrast_samples
    feats = pd.DataFrame(x, columns=[f"f{j:02d}" for j in range(x.shape[1])])
    conv = data.outcome > 0
    base = pd.DataFrame({"visitor_id": [str(s) for s in data.subject], "experiment_id": "bench",
                         "variant": np.asarray(data.arms, dtype=object)[data.arm_index], "converted": conv,
                         "revenue": data.outcome.astype(float), "orders_count": conv.astype("int64"),
                         "sessions_count": np.ones(n, dtype="int64"), "propensity": data.propensity})
    vis = pd.concat([base, feats], axis=1)
    order = np.concatenate([np.flatnonzero(data.arm_index == j) for j in range(k)])  # pytyche's row order
    variants = [VariantData(str(a), vis[data.arm_index == j].reset_index(drop=True), int((data.arm_index == j).sum()),
                            int(conv[data.arm_index == j].sum()), float(data.outcome[data.arm_index == j].sum()))
                for j, a in enumerate(data.arms)]
    obs = ObservedExperimentData("bench", "conversion_rate", variants)
    t0, c0 = time.perf_counter(), time.process_time()
    if engine == "pytyche-own-defaults":  # pytyche's quick-start settings (its 200 burn-in + 200 draws)
        res = pytyche.fit_binary_bcf(obs, seed=seed)
    else:
        res = pytyche.fit_binary_bcf(obs, seed=seed, num_trees_mu=T["num_trees_mu"], num_trees_tau=T["num_trees_tau"],
                                     num_gfr_sweeps=T["num_gfr"], num_burnin=0, num_mcmc=T["draws"])
    d = np.asarray(contrast_samples(res))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tau_true = tau_true[order]
if not engine.startswith("sortition"):
    cate = d.mean(axis=1)
    lo, hi, lo90, hi90 = np.quantile(d, [0.1, 0.9, 0.05, 0.95], axis=1)
rmse = float(np.sqrt(((cate - tau_true) ** 2).mean()))
cov = float(((lo <= tau_true) & (tau_true <= hi)).mean())
cov90 = float(((lo90 <= tau_true) & (tau_true <= hi90)).mean())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
out = {"wall": wall, "cpu": cpu, "peak_mb": peak, "rmse": rmse, "cov80": cov, "cov90": cov90}
if engine.startswith("sortition-"):
    out.update(drift_ate=drift_ate, drift_cate=drift_cate)
print("RESULT " + json.dumps(out))
'''


def run(python: str, engine: str, n: int, seed: int, scenario="two_segments", k=2, outcome="binary",
        timeout=3600, threads: int = THREADS, warm_burnin: int = 10,
        warm_draws: int = TREES["draws"]) -> dict | None:
    cmd = [python, "-c", CHILD, str(ROOT), engine, str(n), str(seed), scenario, str(k), outcome,
           json.dumps(TREES), str(threads), str(warm_burnin), str(warm_draws)]
    # passive OpenMP waits: on a busy shared machine spinning threads slow every engine down many-fold
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        print(f"  {engine:9s} n={n}: timed out after {timeout}s")
        return None
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"  {engine:9s} n={n}: failed\n{out.stderr[-1500:]}")
    return None


def has_module(python: str, name: str) -> bool:
    return subprocess.run([python, "-c", f"import {name}"], capture_output=True).returncode == 0


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


# --r2: per outcome kind, the scenario and arms of the cold-vs-warm round >= 2 comparison
R2_CASES = {"binary": ("two_segments", 2), "continuous": ("reversal", 3), "revenue": ("storefront", 3)}


def round2(args) -> None:
    """Cold refit beside warm start at a round >= 2, per outcome kind and size: medians of the seconds,
    means of RMSE and coverage over seeds 0..repeats-1 (the same data per seed for every engine)."""
    print(f"round >= 2 refit, cold vs warm-started; trees mu/tau {TREES['num_trees_mu']}/{TREES['num_trees_tau']}, "
          f"cold {TREES['num_gfr']} GFR + {TREES['draws']} draws, warm <burn-in> MCMC + {args.warm_draws} draws, "
          f"{args.threads} thread(s); seconds: medians, RMSE and coverage: means over seeds 0..{args.repeats - 1}")
    header = (f"{'outcome':<11}{'scenario':<14}{'K':>2}{'n':>7} {'fit':<14}{'CPU s':>8}{'wall s':>8}"
              f"{'CATE RMSE':>10}{'cov80':>7}{'cov90':>7}{'drift ATE':>10}{'drift CATE':>11}")
    print(header)
    print("-" * len(header))
    for outcome in args.outcomes:
        scenario, k = R2_CASES[outcome]
        for n in args.sizes:
            def mean_runs(engine, burnin):
                runs = [r for r in (run(sys.executable, engine, n, seed=rep, scenario=scenario, k=k, outcome=outcome,
                                        timeout=args.timeout, threads=args.threads, warm_burnin=burnin,
                                        warm_draws=args.warm_draws)
                                    for rep in range(args.repeats)) if r]
                return None if not runs else {
                    **{key: statistics.median(r[key] for r in runs) for key in ("cpu", "wall")},
                    **{key: statistics.fmean(r[key] for r in runs)
                       for key in ("rmse", "cov80", "cov90", "drift_ate", "drift_cate")}}

            rows = {"cold": mean_runs("sortition-cold-r2", 0)}
            rows.update({f"warm, burn {b}": mean_runs("sortition-warm-r2", b) for b in args.warm_burnin})
            for label, m in rows.items():
                if m:
                    print(f"{outcome:<11}{scenario:<14}{k:>2}{n:>7} {label:<14}{m['cpu']:>8.2f}{m['wall']:>8.2f}"
                          f"{m['rmse']:>10.4f}{m['cov80']:>7.3f}{m['cov90']:>7.3f}{m['drift_ate']:>10.2f}"
                          f"{m['drift_cate']:>11.2f}", flush=True)
            cold = rows["cold"]
            for label, m in rows.items():
                if cold and m and label != "cold":
                    print(f"{'':<34} {'ratio c/w ' + label.split()[-1]:<14}"
                          f"{cold['cpu'] / m['cpu']:>7.2f}x{cold['wall'] / m['wall']:>7.2f}x"
                          f"{m['rmse'] / cold['rmse']:>9.2f}x{m['cov80'] - cold['cov80']:>+7.3f}"
                          f"{m['cov90'] - cold['cov90']:>+7.3f}", flush=True)
    print("ratio rows: cold/warm seconds (above 1: warm is faster), warm/cold RMSE, warm - cold coverage. "
          "drift: the first 10 retained draws' mean minus second half's, ATE in posterior sds (largest arm), "
          "CATE as rms over rms posterior sd; a warm chain that needs burn-in drifts more than the cold one")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[800, 5000, 50000])
    ap.add_argument("--repeats", type=int, default=1, help="runs per engine and size (medians are printed)")
    ap.add_argument("--peer-python", default=os.environ.get("SORTITION_PEER_PYTHON", sys.executable),
                    help="interpreter that has pytyche (+ bartz==0.10.0, jax) installed")
    ap.add_argument("--pytyche-max-n", type=int, default=50000, help="skip pytyche above this size")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds allowed per run")
    ap.add_argument("--no-large", action="store_true", help="skip the 100,000-visitor revenue run")
    ap.add_argument("--engines", nargs="+", default=["sortition", "stochtree", "pytyche"],
                    choices=["sortition", "stochtree", "pytyche", "pytyche-own-defaults", "sortition-cold-r2",
                             "sortition-warm-r2"],
                    help="which engines to run (default: all available)")
    ap.add_argument("--r2", action="store_true",
                    help="only the round >= 2 cold vs warm comparison (--sizes, --repeats, --outcomes, ...)")
    ap.add_argument("--outcomes", nargs="+", default=["binary"], choices=list(R2_CASES),
                    help="--r2: outcome kinds (binary: two_segments K=2; continuous: reversal K=3; revenue: "
                         "storefront K=3)")
    ap.add_argument("--threads", type=int, default=THREADS, help="--r2: threads per fit")
    ap.add_argument("--warm-burnin", type=int, nargs="+", default=[10], help="--r2: warm burn-in sweeps to compare")
    ap.add_argument("--warm-draws", type=int, default=TREES["draws"],
                    help="--r2: retained draws of the warm fits (default: the cold fit's %d)" % TREES["draws"])
    args = ap.parse_args()
    if args.r2:
        round2(args)
        return
    py = sys.executable
    engines = [("sortition", py), ("stochtree", py), ("sortition-cold-r2", py), ("sortition-warm-r2", py)]
    if has_module(args.peer_python, "pytyche"):
        engines.append(("pytyche", args.peer_python))
        engines.append(("pytyche-own-defaults", args.peer_python))
    else:
        print(f"pytyche is not installed for {args.peer_python}: skipping it "
              "(pip install pytyche==0.2.1 bartz==0.10.0 jax; pass --peer-python)")
    engines = [(e, p) for e, p in engines if e in args.engines]
    print(f"two_segments, 2 arms, binary; trees mu/tau {TREES['num_trees_mu']}/{TREES['num_trees_tau']}, "
          f"{TREES['num_gfr']} GFR + {TREES['draws']} draws, {THREADS} threads; medians of {args.repeats} run(s)")
    header = f"{'n':>7} {'engine':20} {'wall s':>8} {'peak MB':>8} {'CATE RMSE':>10} {'cov80':>6}"
    print(header)  # engine names: pytyche = same settings as ours; pytyche-own-defaults = its quick-start settings
    for n in args.sizes:
        res = {}
        for engine, python in engines:
            if engine.startswith("pytyche") and n > args.pytyche_max_n:
                print(f"{n:>7} {engine:20} skipped (n > --pytyche-max-n)")
                continue
            runs = [r for r in (run(python, engine, n, seed=rep, timeout=args.timeout) for rep in range(args.repeats)) if r]
            if not runs:
                continue
            res[engine] = m = median_of(runs)
            print(f"{n:>7} {engine:20} {m['wall']:8.2f} {m['peak_mb']:8.0f} {m['rmse']:10.4f} {m['cov80']:6.3f}",
                  flush=True)
        cold, warm = res.get("sortition-cold-r2"), res.get("sortition-warm-r2")
        if cold and warm:
            print(f"{n:>7} ratio round>=2 cold/warm-started: wall x{cold['wall'] / warm['wall']:.2f}, "
                  f"RMSE warm/cold x{warm['rmse'] / cold['rmse']:.2f}, cov80 {warm['cov80']:.3f} vs "
                  f"{cold['cov80']:.3f}", flush=True)
        s = res.get("sortition")
        for peer in ("stochtree", "pytyche", "pytyche-own-defaults"):
            if s and peer in res:
                p = res[peer]
                print(f"{n:>7} ratio {peer}/sortition: wall x{p['wall'] / s['wall']:.2f}, "
                      f"peak memory x{p['peak_mb'] / s['peak_mb']:.2f}, RMSE x{p['rmse'] / s['rmse']:.2f}"
                      + (f"  (sortition overhead over stochtree {100 * (s['wall'] / p['wall'] - 1):+.1f}%)"
                         if peer == "stochtree" else ""), flush=True)
    if not args.no_large:
        print("\nstorefront, 3 arms, revenue (two-part), 100,000 visitors, sortition only")
        r = run(py, "sortition", 100_000, seed=0, scenario="storefront", k=3, outcome="revenue", timeout=args.timeout)
        if r:
            print(f"{100000:>7} {'sortition':20} {r['wall']:8.2f} {r['peak_mb']:8.0f} {r['rmse']:10.4f} "
                  f"{r['cov80']:6.3f}")


if __name__ == "__main__":
    main()
