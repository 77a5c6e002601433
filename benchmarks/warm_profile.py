"""Where a loop round's BCF fit spends its CPU time, cold refit beside warm start (issue 11).

Rows come from a real simulated loop (its segment-dependent allocations give the recorded
propensities the loop's fits see); round r is fitted on rounds 0..r, the warm start taken from a
fit on rounds 0..r-1. One thread, CPU seconds (``time.process_time``). Each stochtree iteration is
timed from one forest sweep's start to the next iteration's, so "GFR", "burn-in" and "retained"
include the probit latent draws, the tau_0 intercept and variance steps of that iteration. Forest
predictions inside the sampler are timed too (rows summed over calls): the active forests' at every
iteration (stochtree's tau_0 step) and, after the iterations, every retained draw's at the fitted rows
(tau) and at the visitors outside them (mu and tau; the order-value model's non-converters).

    python benchmarks/warm_profile.py                          # storefront (revenue, K=3), round 2
    python benchmarks/warm_profile.py --scenario multi_winner --arms 4 --visitors 1500 --round 3
    python benchmarks/warm_profile.py --scenario two_segments --arms 2 --outcome binary
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.experiment import (  # noqa: E402
    SequentialExperiment,
    steps,
)
from sortition.experiment.loop_policy import DEFAULT_POLICY
from sortition.experiment.schedules import fixed
from sortition.experiment.simulation import simulate
from sortition.posterior import fit
from sortition.scenarios import make_scenario
from sortition.store import EventStore

STAGES = ("propensity", "setup (data, previous_model_json)", "GFR", "burn-in", "retained", "final predict",
          "last_draw_json (trim + to_json)", "contrasts + rest")


def _charged(fn: Callable, key: str, totals: Callable[[], dict[str, float]]) -> Callable:
    """``fn``, adding the CPU seconds of each call to ``totals()[key]`` (``totals`` is read at the call:
    the dict may change between calls, e.g. one per round)."""

    def wrapper(*a, **k):
        t = time.process_time()
        try:
            return fn(*a, **k)
        finally:
            totals()[key] += time.process_time() - t

    return wrapper


# forest predictions inside BCFModel.sample, by where they run: "during" the iterations (the active forests,
# stochtree's tau_0 step: both forests at the fitted rows, every iteration) or "after" them (every retained
# draw's forests: tau at the fitted rows, mu and tau at the visitors outside them)
PREDICTIONS = ("during: active forests", "after: tau forests", "after: mu forests")


class _Clock:
    """Wraps stochtree's sweep, its BCF sampler and its forest predictions to attribute CPU time to stages."""

    def __init__(self) -> None:
        self.stages = dict.fromkeys(STAGES, 0.0)
        self.in_sweeps = dict.fromkeys(("GFR", "burn-in", "retained"), 0.0)  # inside the two forest sweeps
        self.predictions = {key: [0.0, 0] for key in PREDICTIONS}  # CPU s, rows predicted
        self.calls: list[tuple[float, float, str]] = []
        self.sampling = False  # inside BCFModel.sample (the propensity model's BART predicts too)

    def reset(self) -> None:
        self.stages = dict.fromkeys(STAGES, 0.0)
        self.in_sweeps = dict.fromkeys(self.in_sweeps, 0.0)
        self.predictions = {key: [0.0, 0] for key in PREDICTIONS}

    def _predicting(self, fn: Callable, key: str) -> Callable:
        clock = self

        def wrapper(self_, dataset, *a):
            t = time.process_time()
            out = fn(self_, dataset, *a)
            if clock.sampling:
                clock.predictions[key][0] += time.process_time() - t
                clock.predictions[key][1] += out.shape[0]
            return out

        return wrapper

    def install(self):
        import stochtree.bcf as bcf_mod
        import stochtree.sampler as sampler_mod
        import stochtree_cpp

        import sortition.posterior.bcf as ours

        clock = self
        for cls, method, key in ((stochtree_cpp.ForestCpp, "Predict", PREDICTIONS[0]),
                                 (stochtree_cpp.ForestCpp, "PredictRaw", PREDICTIONS[0]),
                                 (stochtree_cpp.ForestContainerCpp, "PredictRaw", PREDICTIONS[1]),
                                 (stochtree_cpp.ForestContainerCpp, "Predict", PREDICTIONS[2])):
            setattr(cls, method, self._predicting(getattr(cls, method), key))
        sweep, sample = sampler_mod.ForestSampler.sample_one_iteration, bcf_mod.BCFModel.sample
        trim, prop = ours.last_draw_json, ours.propensity_matrix

        def timed_sweep(self_, container, forest, dataset, residual, rng, gcfg, fcfg, keep, gfr, *a, **k):
            t = time.process_time()
            out = sweep(self_, container, forest, dataset, residual, rng, gcfg, fcfg, keep, gfr, *a, **k)
            clock.calls.append((t, time.process_time(), "GFR" if gfr else ("retained" if keep else "burn-in")))
            return out

        def timed_sample(self_, *a, **k):
            clock.calls.clear()
            clock.sampling = True
            t0 = time.process_time()
            try:
                out = sample(self_, *a, **k)
            finally:
                clock.sampling = False
            t1 = time.process_time()
            calls = clock.calls
            clock.stages["setup (data, previous_model_json)"] += calls[0][0] - t0
            for (start, _, kind), (nxt, _, _) in zip(calls[0::2], calls[2::2], strict=False):
                clock.stages[kind] += nxt - start
            clock.stages[calls[-2][2]] += calls[-1][1] - calls[-2][0]
            for start, end, kind in calls:
                clock.in_sweeps[kind] += end - start
            clock.stages["final predict"] += t1 - calls[-1][1]
            return out

        sampler_mod.ForestSampler.sample_one_iteration = timed_sweep
        bcf_mod.BCFModel.sample = timed_sample
        ours.last_draw_json = _charged(trim, "last_draw_json (trim + to_json)", lambda: clock.stages)
        ours.propensity_matrix = _charged(prop, "propensity", lambda: clock.stages)


PARTS = ("fit", "tree", "keep", "allocate", "population", "recommend")


def loop_rows(name: str, arms: int, rounds: int, visitors: int, seed: int):
    """The loop's rows after ``rounds`` rounds (warm starts, stable segments: the defaults), and each
    round's CPU seconds per :class:`LoopPolicy` part plus the rest of ``advance`` and the state file write."""
    sc = make_scenario(name, arms)
    parts: list[dict[str, float]] = []

    policy = dataclasses.replace(
        DEFAULT_POLICY, **{p: _charged(getattr(DEFAULT_POLICY, p), p, lambda: parts[-1]) for p in PARTS})
    exp = SequentialExperiment(sc.arms, key="profile", outcome=sc.outcome, engine="bcf", seed=seed, policy=policy,
                               fit_options={"progress": False, "num_threads": 1}, schedule=fixed(rounds, visitors))
    advance = exp.advance

    def timed_advance(rows):
        parts.append(dict.fromkeys((*PARTS, "rest of advance", "save state file"), 0.0))
        t = time.process_time()
        out = advance(rows)
        parts[-1]["rest of advance"] = time.process_time() - t - sum(parts[-1].values())
        with tempfile.TemporaryDirectory() as tmp:
            t = time.process_time()
            exp.save(Path(tmp) / "state.json")
            parts[-1]["save state file"] = time.process_time() - t
        return out

    exp.advance = timed_advance
    with EventStore(":memory:") as store:
        simulate(sc, exp, seed=seed, store=store)
    print(f"loop rounds, CPU seconds per part (1 thread; round 0 includes imports): {name}, {visitors}/round")
    print(f"{'round':>5}{'n':>7}" + "".join(f"{p:>17}" for p in parts[0]))
    for r, row in enumerate(parts):
        print(f"{r:>5}{(r + 1) * visitors:>7}" + "".join(f"{v:>17.3f}" for v in row.values()))
    return sc, exp.data_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="storefront")
    ap.add_argument("--arms", type=int, default=3)
    ap.add_argument("--outcome", default=None, help="refit the loop's rows as this kind (default: the scenario's)")
    ap.add_argument("--visitors", type=int, default=1500, help="visitors per round")
    ap.add_argument("--round", type=int, default=2, help="the round profiled (0-based; >= 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm-burnin", type=int, default=None, help="warm burn-in (default: fit's)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    sc, rows = loop_rows(args.scenario, args.arms, args.round + 1, args.visitors, args.seed)
    outcome = args.outcome or sc.outcome
    if outcome == "binary" and sc.outcome != "binary":
        rows = rows.assign(outcome=(rows["outcome"] > rows["outcome"].median()).astype(float))
    arms = tuple(sc.arms)
    prev = steps.experiment_data(rows[rows["round"] < args.round].reset_index(drop=True), arms, None)
    data = steps.experiment_data(rows.reset_index(drop=True), arms, None)
    opts = dict(outcome=outcome, progress=False, num_threads=1)
    start = fit(prev, seed=args.seed + 1, **opts).warm_start
    clock = _Clock()
    clock.install()
    print(f"{args.scenario}, {outcome}, K={len(arms)}, round {args.round}: {data.n} visitors "
          f"(previous fit {prev.n}); 1 thread, CPU seconds")
    res, quality = {}, {}
    extra = {} if args.warm_burnin is None else {"warm_burnin": args.warm_burnin}
    for label, ws in (("cold", None), ("warm", start)):
        clock.reset()
        t0 = time.process_time()
        post = fit(data, seed=args.seed, warm_start=ws, **opts, **extra)
        total = time.process_time() - t0
        clock.stages["contrasts + rest"] = total - sum(clock.stages.values())
        res[label] = (dict(clock.stages), total, post.info["warm_start"], dict(clock.in_sweeps),
                      {key: tuple(v) for key, v in clock.predictions.items()})
        truth = sc.truth(data.covariates).contrasts if outcome == sc.outcome else None
        if truth is not None:  # the same rows for both fits: their quality is comparable
            (lo8, hi8), (lo9, hi9) = post.cate_interval(0.8), post.cate_interval(0.9)
            quality[label] = (float(np.sqrt(np.mean((post.cate() - truth) ** 2))),
                              float(np.mean((lo8 <= truth) & (truth <= hi8))),
                              float(np.mean((lo9 <= truth) & (truth <= hi9))))
    t = time.process_time()
    doc = post.warm_start.to_json()
    size = sum(len(v) for v in doc["models"].values())
    to_json_s = time.process_time() - t
    print(f"{'stage':<36}{'cold s':>9}{'warm s':>9}{'ratio':>8}{'share of warm':>15}{'in tree sweeps':>16}")
    for stage in STAGES:
        c, w = res["cold"][0][stage], res["warm"][0][stage]
        inside = res["warm"][3].get(stage) if stage != "GFR" else res["cold"][3]["GFR"]
        ref = w if stage != "GFR" else c
        note = f"{inside / ref:>16.0%}" if inside is not None and ref > 1e-3 else ""
        print(f"{stage:<36}{c:>9.3f}{w:>9.3f}{(c / w if w > 1e-3 else float('nan')):>8.2f}"
              f"{w / res['warm'][1]:>15.0%}{note}")
    c, w = res["cold"][1], res["warm"][1]
    print(f"{'total fit':<36}{c:>9.3f}{w:>9.3f}{c / w:>8.2f}   ({res['warm'][2]})")
    print("forest predictions in stochtree's sampler (CPU s, rows predicted; 'during' is part of burn-in and "
          "retained, 'after' of final predict):")
    for key in PREDICTIONS:
        (cs, cn), (ws, wn) = res["cold"][4][key], res["warm"][4][key]
        print(f"  {key:<34}{cs:>9.3f}{ws:>9.3f}   rows: {cn:,} cold, {wn:,} warm")
    st = res["warm"][0]
    floor = st["retained"] + st["final predict"]
    print(f"ceiling of cold/warm with these retained draws: x{c / (w - st['burn-in']):.2f} with no burn-in, "
          f"x{c / floor:.2f} if all but the retained sweeps and the final predict were free")
    for label, (rmse, c80, c90) in quality.items():
        print(f"{label}: CATE RMSE {rmse:.4f}, 80% coverage {c80:.3f}, 90% coverage {c90:.3f}")
    print(f"warm start: {size / 1e6:.2f} MB of stochtree JSON, WarmStart.to_json {to_json_s:.3f} s")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
