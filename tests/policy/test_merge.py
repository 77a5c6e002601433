"""Spurious leaves merge unless the posterior says serving them apart raises welfare (seeded, built draws)."""

import numpy as np
import pandas as pd
import pytest

from sortition.experiment import steps
from sortition.policy import fit_policy_tree, policy_tree_from_rules
from sortition.policy.tree import merge_groups, split_gain_draws
from sortition.report.rules import readable
from sortition.rules import Condition, Rule

from .conftest import make_posterior

S = 2000


def _draws(rng, mean, sd):
    """(S, K-1) mean-contrast draws around ``mean``."""
    return np.asarray(mean)[None, :] + rng.normal(0, sd, (S, len(mean)))


def test_split_gain_is_zero_for_one_best_arm_and_the_arm_choice_otherwise():
    rng = np.random.default_rng(0)
    a, b = _draws(rng, [0.5, 0.0], 0.1), _draws(rng, [0.0, 0.6], 0.1)
    same = _draws(rng, [0.4, 0.1], 0.1)
    assert np.all(split_gain_draws(100, a, 300, same) == 0.0)  # both served t1, apart or together
    gain = split_gain_draws(100, a, 300, b)
    # together both get t2 (the pooled best): apart, a gains its t1 - t2 on each draw
    assert np.allclose(gain, 100 * (a[:, 0] - a[:, 1]) / 400)
    assert gain.mean() > 0 and np.mean(gain > 0) == 1.0
    # a control-best group: apart it is served control (value 0) instead of the pooled t2
    c = _draws(rng, [-0.3, -0.2], 0.05)
    assert np.allclose(split_gain_draws(300, b, 100, c), 100 * (0 - c[:, 1]) / 400)


def test_leaves_with_different_best_arms_merge_without_evidence():
    rng = np.random.default_rng(1)
    counts = np.array([500, 500])
    weak = np.stack([_draws(rng, [0.05, 0.0], 0.3), _draws(rng, [0.0, 0.05], 0.3)])
    strong = np.stack([_draws(rng, [0.05, 0.0], 0.01), _draws(rng, [0.0, 0.05], 0.01)])
    assert merge_groups(counts, weak, 10, probability=0.9) == [[0, 1]]
    assert merge_groups(counts, weak, 10, probability=0.0) == [[0], [1]]  # 0: different arms stay apart
    assert merge_groups(counts, strong, 10, probability=0.9) == [[0], [1]]
    # the threshold is inclusive: apart at exactly the pair's probability, merged just above it
    p = float(np.mean(split_gain_draws(500, weak[0], 500, weak[1]) > 0))
    assert 0.3 < p < 0.9
    assert merge_groups(counts, weak, 10, probability=p) == [[0], [1]]
    assert merge_groups(counts, weak, 10, probability=p + 1e-9) == [[0, 1]]


def test_the_pair_with_least_evidence_merges_first_and_small_leaves_always_merge():
    rng = np.random.default_rng(2)
    a = _draws(rng, [0.5, 0.0], 0.05)   # t1, clearly
    b = _draws(rng, [0.0, 0.5], 0.05)   # t2, clearly
    c = _draws(rng, [0.03, 0.0], 0.3)   # t1 by its mean, barely: no evidence against t2 either
    groups = merge_groups(np.array([400, 400, 200]), np.stack([a, b, c]), 10, probability=0.9)
    assert groups == [[0, 2], [1]]      # c joins a (same arm: gain 0 on every draw), then a+c vs b stay apart
    # below the minimum count a leaf joins the group whose best arm wins most in it, evidence or not
    tiny = _draws(rng, [0.0, 0.5], 0.01)
    assert merge_groups(np.array([400, 400, 5]), np.stack([a, b, tiny]), 10, probability=0.0) == [[0], [1, 2]]


def test_fit_policy_tree_merges_a_split_without_evidence():
    rng = np.random.default_rng(3)
    n = 2000
    x = pd.DataFrame({"x": rng.uniform(0, 10, n)})
    tau = np.where(x["x"] > 5, 0.02, -0.02)[:, None]
    weak = make_posterior(tau[:, None, :] + rng.normal(0, 0.5, (n, 200, 1)), x)
    strong = make_posterior(tau[:, None, :] + rng.normal(0, 0.05, (n, 200, 1)), x)
    assert len(fit_policy_tree(weak, max_depth=1, n_bootstrap=0, merge=False).segments) == 2
    assert len(fit_policy_tree(weak, max_depth=1, n_bootstrap=0, merge_probability=0.0).segments) == 2
    merged = fit_policy_tree(weak, max_depth=1, n_bootstrap=0, merge_probability=0.9)
    assert len(merged.segments) == 1 and merged.segments[0].share == 1.0
    assert merged.segments[0].rule == Rule()  # everyone, not "x <= 5 OR x > 5"
    apart = fit_policy_tree(strong, max_depth=1, n_bootstrap=0, merge_probability=0.9)
    assert [seg.best_arm for seg in apart.segments] == ["control", "t1"]
    with pytest.raises(ValueError, match="merge_probability must be in"):
        fit_policy_tree(weak, merge_probability=1.5)


def test_merged_leaves_read_short_and_one_segment_left_is_everyone():
    rng = np.random.default_rng(3)
    n = 2000
    x = pd.DataFrame({"x": rng.uniform(0, 10, n), "d": rng.choice(["a", "b", None], n, p=[0.5, 0.45, 0.05])})
    x.loc[rng.random(n) < 0.03, "x"] = np.nan
    tau = np.where(x["x"] > 5, 0.02, -0.02)[:, None]
    post = make_posterior(tau[:, None, :] + rng.normal(0, 0.5, (n, 200, 1)), x)
    leaves = fit_policy_tree(post, max_depth=2, n_bootstrap=0, merge=False)
    assert [readable(s.rule) for s in leaves.segments] == \
        ["x <= 3.834", "3.834 < x <= 5", "x > 5", "x IS NULL"]
    merged = fit_policy_tree(post, max_depth=2, n_bootstrap=0, merge_probability=0.9)
    assert [readable(s.rule) for s in merged.segments] == ["x <= 5 or x IS NULL", "x > 5"]
    assert (merged.summary.masks[0] == (x["x"].isna() | (x["x"] <= 5)).to_numpy()).all()
    # every leaf in one segment: the empty rule, which serves a missing or unseen value too
    whole = fit_policy_tree(post, max_depth=2, n_bootstrap=0, merge_probability=1.0)
    assert [s.rule for s in whole.segments] == [Rule()] and whole.segments[0].share == 1.0
    assert readable(whole.segments[0].rule) == "everyone" and Rule().matches({"x": "unseen"})


def test_resegmenting_needs_the_minimum_gain_with_high_probability():
    rng = np.random.default_rng(4)
    n = 1000
    x = pd.DataFrame({"x": rng.uniform(0, 10, n)})
    tau = np.where(x["x"] > 5, 0.3, -0.1)[:, None]
    post = make_posterior(tau[:, None, :] + rng.normal(0, 1.0, (n, 400, 1)), x)
    kept = policy_tree_from_rules(post, [Rule((Condition("x", "GTE", -100.0),))])  # one segment
    halves = [Rule((Condition("x", "LTE", 5.0),)), Rule((Condition("x", "GT", 5.0),))]
    new = policy_tree_from_rules(post, halves)
    gain = new.welfare_draws() - kept.welfare_draws()
    p0 = float(np.mean(gain > 0))
    assert p0 >= 0.95
    assert steps.choose_tree(new, kept, 0.95) == (new, p0)
    min_gain = float(np.quantile(gain, 0.10))  # only ~90% of draws gain more than this
    chosen, p = steps.choose_tree(new, kept, 0.95, min_gain=min_gain)
    assert chosen is kept and p == pytest.approx(np.mean(gain > min_gain)) and p < 0.95
    assert steps.choose_tree(new, kept, p, min_gain=min_gain)[0] is new
