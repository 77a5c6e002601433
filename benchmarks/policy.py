"""Benchmark: Thompson allocation and the welfare policy tree, beside pytyche (when installed).

    python benchmarks/policy.py [--n 200000] [--draws 200] [--repeat 3] [--scenario-n 4000] [--engine bcf]

1. thompson_allocation at n visitors x S draws x K = 3 arms over 8 segments (a depth-3 welfare tree),
   wall time (median of --repeat) and peak traced memory, beside pytyche 0.2.1's thompson_allocation
   functions (``best_arms`` / ``arm_win_frequencies`` / ``iterative_floor_clip`` over
   ``contrasts[members].mean(axis=0)``, membership by its ``apply_rule``) on the same draws; the
   weights must be identical.
2. fit_policy_tree: exact depth-2 search on 100,000 visitors x 10 covariates, and the full fit at n.
3. Per scenario with ground truth: the true policy value of the welfare tree vs a Gini classifier
   tree (scikit-learn) on best-arm labels of the same posterior.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.data import ExperimentData  # noqa: E402
from sortition.policy import Segment, best_arms, fit_policy_tree, thompson_allocation  # noqa: E402
from sortition.posterior import Posterior  # noqa: E402
from sortition.rules import Condition, Rule  # noqa: E402


def measure(fn, repeat: int):
    """(median seconds, peak traced bytes above the start, last result)."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return statistics.median(times), peak, result


def synthetic_posterior(n: int, draws: int, seed: int = 0) -> Posterior:
    """n visitors, 10 covariates (8 numeric, 2 categorical), K = 3, effects on three of them."""
    rng = np.random.default_rng(seed)
    cov = {f"x{i}": rng.normal(size=n) for i in range(8)}
    cov["device"] = rng.choice(["mobile", "desktop", "tablet"], n)
    cov["channel"] = rng.choice(["search", "social", "email", "direct"], n)
    x = pd.DataFrame(cov)
    t1 = 0.3 * (x["x0"] > 0) + 0.2 * (x["x1"] > 0.5) - 0.2
    t2 = 0.25 * (x["x2"] < 0) + 0.1 * (x["x0"] > 0) - 0.1
    mean = np.stack([t1, t2], axis=1).astype(np.float32)
    contrasts = np.empty((n, draws, 2), dtype=np.float32)
    step = 20_000
    for s in range(0, n, step):  # fill in chunks to keep the build's own peak low
        noise = rng.standard_normal((min(step, n - s), draws, 2), dtype=np.float32)
        contrasts[s:s + step] = mean[s:s + step, None, :] + 2.0 * noise
    frame = x.copy()
    frame["arm"] = np.array(["control", "a", "b"])[rng.integers(0, 3, n)]
    frame["y"] = rng.normal(size=n)
    data = ExperimentData.from_frame(frame, arms=["control", "a", "b"], covariates=list(x.columns))
    post = Posterior.from_draws(contrasts, data=data)
    del contrasts
    return post


def eight_segments(frame: pd.DataFrame) -> list[Segment]:
    """x0 quartile bands x (mobile | desktop or tablet): 8 segments that partition the visitors."""
    cuts = [float(np.round(q, 3)) for q in np.quantile(frame["x0"], [0.25, 0.5, 0.75])]
    bands = [[Condition("x0", "LTE", cuts[0])]]
    bands += [[Condition("x0", "GT", lo), Condition("x0", "LTE", hi)] for lo, hi in zip(cuts, cuts[1:])]
    bands += [[Condition("x0", "GT", cuts[-1])]]
    devices = [["mobile"], ["desktop", "tablet"]]
    return [Segment(i, Rule(band + [Condition("device", "ONE_OF", d)]))
            for i, (band, d) in enumerate((b, d) for b in bands for d in devices)]


def pytyche_functions():
    try:
        from pytyche.analysis import _thompson as pt
        from pytyche.contracts import ComparisonRule, InRule, SegmentRule
        from pytyche.summarize import apply_rule
    except ImportError:
        return None
    return pt, ComparisonRule, InRule, SegmentRule, apply_rule


def to_pytyche_rule(rule, ComparisonRule, InRule, SegmentRule):
    clauses = []
    for c in rule.conditions:
        if c.operator in ("GT", "GTE", "LT", "LTE"):
            clauses.append(ComparisonRule(c.attribute, c.operator.lower(), float(c.value)))
        elif c.operator == "ONE_OF":
            clauses.append(InRule(c.attribute, tuple(c.value)))
        else:
            return None  # NOT_ONE_OF / IS_NULL have no pytyche clause
    return SegmentRule(rule.describe(), tuple(clauses))


def allocation_section(args) -> None:
    print(f"== thompson_allocation: n={args.n:,} visitors, S={args.draws} draws, K=3, 8 segments ==")
    post = synthetic_posterior(args.n, args.draws)
    segments = eight_segments(post.data.covariates)
    print("segments: " + "; ".join(s.rule.describe() for s in segments[:2]) + "; ...")
    ours_s, ours_mem, ours = measure(lambda: thompson_allocation(post, segments, epsilon=0.02), args.repeat)
    print(f"sortition thompson_allocation: {ours_s * 1e3:9.1f} ms   peak {ours_mem / 2**20:8.1f} MiB")
    peer = pytyche_functions()
    if peer is None:
        print("pytyche not installed (pip install pytyche==0.2.1): peer skipped")
        return
    pt, ComparisonRule, InRule, SegmentRule, apply_rule = peer
    visitors = post.data.covariates
    contrasts = post.contrast_draws()
    rules = [to_pytyche_rule(s.rule, ComparisonRule, InRule, SegmentRule) for s in segments]
    arms = post.arms

    def pytyche_allocation():
        out = {}
        for seg, prule in zip(segments, rules):
            members = (apply_rule(visitors, prule).to_numpy() if prule is not None else seg.rule.mask(visitors))
            mean_contrasts = contrasts[members].mean(axis=0)
            raw = pt.arm_win_frequencies(mean_contrasts, len(arms))
            weights = pt.iterative_floor_clip(raw, 0.02)
            out[seg.id] = {a: float(w) for a, w in zip(arms, weights)}
        return out

    if any(r is None for r in rules):
        print("note: some rules have no pytyche clause; their membership uses sortition's mask on both sides")
    peer_s, peer_mem, theirs = measure(pytyche_allocation, args.repeat)
    print(f"pytyche 0.2.1 thompson funcs:  {peer_s * 1e3:9.1f} ms   peak {peer_mem / 2**20:8.1f} MiB")
    print(f"ratio: {peer_s / ours_s:.1f}x faster, peak memory {ours_mem / peer_mem:.3f} of pytyche's")
    identical = all(ours[k] == theirs[k] for k in ours)
    print(f"weights identical: {identical}")
    if not identical:
        for k in ours:
            if ours[k] != theirs[k]:
                print(f"  segment {k}: sortition {ours[k]}  pytyche {theirs[k]}")
    assert identical, "allocation weights differ from pytyche's"
    del contrasts

    t_fit, _, _ = measure(lambda: fit_policy_tree(post, n_bootstrap=20), 1)
    print(f"fit_policy_tree depth 2 at n={args.n:,} with 20 bootstrap refits: {t_fit:.2f} s")


def tree_section(args) -> None:
    print("== exact depth-2 welfare tree: 100,000 visitors x 10 covariates ==")
    post = synthetic_posterior(100_000, 20, seed=1)
    for label, kw in [("search only (n_bins=64, no refine)", dict(refine_bins=0)),
                      ("search + refine (default)", {})]:
        seconds, _, tree = measure(lambda kw=kw: fit_policy_tree(post, max_depth=2, n_bootstrap=0, **kw), args.repeat)
        print(f"{label}: {seconds:.2f} s (median of {args.repeat}), {len(tree.segments)} leaves, "
              f"welfare {tree.welfare:.4f}")


def gini_section(args) -> None:
    try:
        from sklearn.tree import DecisionTreeClassifier
    except ImportError:
        print("scikit-learn not installed: welfare vs Gini comparison skipped")
        return
    from sortition.posterior import fit
    from sortition.scenarios import SCENARIOS, generate

    print(f"== true policy value per visitor vs control: welfare tree vs Gini tree (depth 2, min leaf 10%), "
          f"n={args.scenario_n}, engine={args.engine} ==")
    print(f"{'scenario':<16}{'K':>3}{'welfare tree':>14}{'Gini tree':>12}{'difference':>12}{'oracle':>10}")
    for name in SCENARIOS:
        arms = 3
        try:
            data, truth = generate(name, args.scenario_n, arms=arms, seed=11)
        except ValueError:
            data, truth = generate(name, args.scenario_n, seed=11)
        outcome = truth.outcome_kind
        post = fit(data, outcome=outcome, engine=args.engine, draws=100, seed=3, progress=False)
        frame = data.covariates
        true_gain = truth.expected - truth.expected[:, :1]  # (n, K), control = 0
        rows = np.arange(data.n)
        tree = fit_policy_tree(post, max_depth=2, min_leaf_share=0.1, n_bootstrap=0)
        index = {a: i for i, a in enumerate(post.arms)}
        leaf = tree.assign(frame)
        served = np.array([index[tree.segments[s].best_arm] for s in leaf])
        welfare_value = true_gain[rows, served].mean()
        design = pd.get_dummies(frame, dummy_na=False).astype(float)
        gini = DecisionTreeClassifier(max_depth=2, min_samples_leaf=0.1, random_state=0)
        gini.fit(design.to_numpy(), best_arms(post.cate()))
        gini_value = true_gain[rows, gini.predict(design.to_numpy())].mean()
        oracle = true_gain.max(axis=1).mean()
        print(f"{name:<16}{post.n_arms:>3}{welfare_value:>14.4f}{gini_value:>12.4f}"
              f"{welfare_value - gini_value:>12.4f}{oracle:>10.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenario-n", type=int, default=4000)
    parser.add_argument("--engine", default="bcf", choices=["bcf", "stratified"])
    parser.add_argument("--skip", nargs="*", default=[], choices=["allocation", "tree", "gini"])
    args = parser.parse_args()
    if "allocation" not in args.skip:
        allocation_section(args)
    if "tree" not in args.skip:
        tree_section(args)
    if "gini" not in args.skip:
        gini_section(args)


if __name__ == "__main__":
    main()
