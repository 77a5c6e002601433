"""Welfare policy tree: exact depth-2 search, segments agree with thompson_allocation, rules partition."""

import itertools

import numpy as np
import pandas as pd
import pytest

from sortition.policy import fit_policy_tree, thompson_allocation
from sortition.policy.features import encode_features
from sortition.policy.search import TreeSearch
from sortition.rules import AnyOf

from .conftest import make_posterior


def _value(rewards, rows):
    return rewards[rows].sum(axis=0).max()


def _splits(features, rows):
    """Every admissible split of a node, enumerated independently: (regular children, extra leaf)."""
    for f in features:
        codes = f.codes[rows]
        missing = codes == f.n_slots - 1
        extra = rows[missing]
        if missing.any():
            yield [rows[~missing], rows[missing]], rows[:0]  # the null split
        present = rows[~missing]
        codes = codes[~missing]
        if f.categorical:
            levels = np.unique(codes)
            for r in range(1, len(levels)):
                for subset in itertools.combinations(levels, r):
                    left = np.isin(codes, subset)
                    yield [present[left], present[~left]], extra
        else:
            for t in range(f.n_slots - 2):
                yield [present[codes <= t], present[codes > t]], extra


def _brute(features, rewards, rows, depth, min_count):
    best = _value(rewards, rows)
    if depth == 0:
        return best
    for children, extra in _splits(features, rows):
        if all(len(c) >= min_count for c in children):
            total = sum(_brute(features, rewards, c, depth - 1, min_count) for c in children)
            best = max(best, total + (_value(rewards, extra) if len(extra) else 0.0))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_depth_two_search_is_exact_numeric(seed):
    rng = np.random.default_rng(seed)
    n = 80
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 6, n), "c": rng.uniform(size=n)})
    frame.loc[rng.random(n) < 0.15, "c"] = np.nan
    rewards = np.concatenate([np.zeros((n, 1)), rng.normal(size=(n, 2))], axis=1)
    features = encode_features(frame, n_bins=8)
    for depth in (1, 2):
        leaves = TreeSearch(features, rewards, 0.1).fit(depth)
        found = sum(_value(rewards, leaf.rows) for leaf in leaves)
        assert found == pytest.approx(_brute(features, rewards, np.arange(n), depth, 8))
        rows = np.sort(np.concatenate([leaf.rows for leaf in leaves]))
        assert rows.tolist() == list(range(n))  # the leaves partition the visitors


@pytest.mark.parametrize("seed", range(3))
def test_depth_two_search_is_exact_categorical_two_arms(seed):
    rng = np.random.default_rng(10 + seed)
    n = 90
    frame = pd.DataFrame({"g": rng.choice(list("pqrst"), n), "x": rng.normal(size=n)})
    rewards = np.concatenate([np.zeros((n, 1)), rng.normal(size=(n, 1))], axis=1)
    features = encode_features(frame, n_bins=6)
    # two arms, no binding leaf size: ordering levels by mean reward is exact for one split
    leaves = TreeSearch(features, rewards, 0.01).fit(1)
    found = sum(_value(rewards, leaf.rows) for leaf in leaves)
    assert found == pytest.approx(_brute(features, rewards, np.arange(n), 1, 1))


def _scenario(seed, n=3000, s=60, noise=0.3):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "recency": rng.uniform(0, 10, n),
            "device": rng.choice(["mobile", "desktop", "tablet"], n),
            "age": np.where(rng.random(n) < 0.3, np.nan, rng.uniform(18, 80, n)),
        }
    )
    tau = np.stack(
        [np.where(x["recency"] > 4, 0.4, -0.3), np.where(x["device"] == "mobile", 0.3, -0.2)], axis=1
    )
    draws = tau[:, None, :] + rng.normal(0, noise, size=(n, s, 2))
    return make_posterior(draws, x, seed), tau


def test_segments_match_thompson_allocation_and_partition():
    post, tau = _scenario(0)
    tree = fit_policy_tree(post, n_bootstrap=4, seed=1)
    assert 2 <= len(tree.segments) <= 4
    alloc = thompson_allocation(post, tree.segments, epsilon=0.0)
    frame = post.data.covariates
    covered = np.zeros(post.n, dtype=int)
    for seg in tree.segments:
        assert alloc[seg.id] == seg.arm_best_probabilities  # same code path, draw for draw
        mask = seg.rule.mask(frame)
        covered += mask
        assert seg.share == pytest.approx(mask.mean()) and seg.share >= 0.1
        lo, hi = seg.gate_interval
        assert lo <= seg.gate_estimate <= hi
        assert 0.0 <= seg.stability <= 1.0
        truth = np.concatenate([[0.0], tau[mask].mean(axis=0)])
        assert seg.best_arm == post.arms[int(np.argmax(truth))]  # strong signal: the right arm
    assert (covered == 1).all()
    assert (tree.assign(frame) >= 0).all()
    assert tree.welfare > 0
    assert "recency" in " ".join(seg.rule.describe() for seg in tree.segments)


def test_missing_values_get_their_own_leaf():
    rng = np.random.default_rng(4)
    n = 3000
    x = pd.DataFrame({"recency": np.where(rng.random(n) < 0.03, np.nan, rng.uniform(0, 40, n))})
    tau = np.where(x["recency"].isna(), 0.8, np.where(x["recency"] > 20, 0.5, -0.5))[:, None]
    post = make_posterior(tau[:, None, :] + rng.normal(0, 0.2, (n, 30, 1)), x)
    leaves = fit_policy_tree(post, max_depth=1, n_bootstrap=0, merge=False)
    rules = [seg.rule.describe() for seg in leaves.segments]
    assert rules[2] == "recency IS NULL" and rules[0].startswith("recency <= 2")
    assert [seg.best_arm for seg in leaves.segments] == ["control", "t1", "t1"]
    assert sum(seg.share for seg in leaves.segments) == pytest.approx(1.0)
    assert leaves.segments[2].share == pytest.approx(x["recency"].isna().mean())
    # merged (the default): the 3% IS NULL leaf and the leaf with the same best arm are one OR segment
    tree = fit_policy_tree(post, max_depth=1, n_bootstrap=0)
    assert len(tree.segments) == 2 and [seg.best_arm for seg in tree.segments] == ["control", "t1"]
    merged = tree.segments[1].rule
    assert isinstance(merged, AnyOf) and merged.describe() == f"{rules[1]} OR recency IS NULL"
    assert tree.segments[1].share == pytest.approx(leaves.segments[1].share + leaves.segments[2].share)
    assert tree.welfare == pytest.approx(leaves.welfare)  # same arms served: same welfare
    assert tree.summary.means.shape == (2, 30, 1)


def test_missing_values_are_routed_by_is_null():
    rng = np.random.default_rng(3)
    n = 2000
    x = pd.DataFrame({"age": np.where(rng.random(n) < 0.4, np.nan, rng.uniform(18, 80, n))})
    tau = np.where(x["age"].isna(), 0.5, -0.5)[:, None]
    post = make_posterior(tau[:, None, :] + rng.normal(0, 0.2, (n, 30, 1)), x)
    tree = fit_policy_tree(post, max_depth=1, n_bootstrap=0)
    described = sorted(seg.rule.describe() for seg in tree.segments)
    assert described == ["age IS NOT NULL", "age IS NULL"]
    best = {seg.rule.describe(): seg.best_arm for seg in tree.segments}
    assert best == {"age IS NULL": "t1", "age IS NOT NULL": "control"}
    assert np.isnan(tree.segments[0].stability)


def test_depth_three_and_min_leaf_share():
    post, _ = _scenario(1, n=2000)
    tree = fit_policy_tree(post, max_depth=3, min_leaf_share=0.15, n_bootstrap=0)
    assert 1 <= len(tree.segments) <= 8
    assert all(seg.share >= 0.15 for seg in tree.segments)
    assert sum(seg.share for seg in tree.segments) == pytest.approx(1.0)
    two = fit_policy_tree(post, max_depth=2, min_leaf_share=0.15, n_bootstrap=0)
    assert tree.welfare >= two.welfare - 1e-12


def _magnitude_scenario(seed, n=3000, s=40):
    """Labels follow x2 (small effects, most visitors); welfare follows x1 (large effects, few)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.integers(0, 10, n), "x2": rng.integers(0, 10, n)})
    small = np.where(x["x2"] >= 5, 0.02, -0.02)
    tau = np.where(x["x1"] <= 0, 2.0, np.where(x["x1"] >= 9, -2.0, small))[:, None]
    draws = tau[:, None, :] + rng.normal(0, 0.05, size=(n, s, 1))
    return make_posterior(draws, x, seed), tau


def test_welfare_tree_at_least_gini_tree_on_true_value():
    sklearn_tree = pytest.importorskip("sklearn.tree")
    from sortition.policy import best_arms

    gaps = []
    for seed, scenario in [(0, _scenario), (1, _magnitude_scenario), (2, _magnitude_scenario)]:
        post, tau = scenario(seed)
        frame = post.data.covariates
        tree = fit_policy_tree(post, n_bootstrap=0)
        arm_index = {a: i for i, a in enumerate(post.arms)}
        served = np.array([arm_index[tree.segments[s].best_arm] for s in tree.assign(frame)])
        true_reward = np.concatenate([np.zeros((post.n, 1)), tau], axis=1)
        welfare_value = true_reward[np.arange(post.n), served].mean()
        features = pd.get_dummies(frame, dummy_na=True).fillna(-1.0).to_numpy(dtype=float)
        gini = sklearn_tree.DecisionTreeClassifier(max_depth=2, min_samples_leaf=0.1, random_state=0)
        gini.fit(features, best_arms(post.cate()))
        gini_value = true_reward[np.arange(post.n), gini.predict(features)].mean()
        gaps.append(welfare_value - gini_value)
    assert min(gaps) >= -1e-3  # threshold resolution only
    assert max(gaps) > 0.05  # where magnitudes matter the welfare tree wins clearly


def test_bad_inputs(two_segment_posterior):
    post, draws = two_segment_posterior
    with pytest.raises(TypeError, match="Posterior"):
        fit_policy_tree(draws)
    for kwargs, field in [
        ({"max_depth": 4}, "max_depth"),
        ({"max_depth": 0}, "max_depth"),
        ({"min_leaf_share": 0.0}, "min_leaf_share"),
        ({"min_leaf_share": 0.6}, "min_leaf_share"),
        ({"covariates": ["nope"]}, "nope"),
        ({"n_bootstrap": -1}, "n_bootstrap"),
        ({"n_bins": 1}, "n_bins"),
    ]:
        with pytest.raises(ValueError, match=field):
            fit_policy_tree(post, **kwargs)
    with pytest.raises(ValueError, match="infinite"):
        encode_features(pd.DataFrame({"z": [1.0, np.inf]}))
    with pytest.raises(ValueError, match="levels"):
        encode_features(pd.DataFrame({"id": [f"u{i}" for i in range(100)]}))


def test_path_simplification_keeps_membership():
    from sortition.policy.search import _simplify
    from sortition.rules import Condition, Rule

    frame = pd.DataFrame({"c": ["a", "b", "c", None, "d"], "x": [1.0, 2.0, 3.0, np.nan, 5.0]})
    paths = [
        (Condition("c", "ONE_OF", ["a", "b", "c"]), Condition("c", "NOT_ONE_OF", ["b"])),
        (Condition("c", "NOT_ONE_OF", ["a"]), Condition("c", "ONE_OF", ["b", "a", "d"])),
        (Condition("c", "NOT_ONE_OF", ["a"]), Condition("c", "NOT_ONE_OF", ["b"])),
        (Condition("c", "ONE_OF", ["a", "b"]), Condition("c", "ONE_OF", ["b", "c"])),
        (Condition("x", "LTE", 3), Condition("x", "LTE", 2), Condition("x", "GT", 1)),
    ]
    for path in paths:
        simple = _simplify(path)
        assert len({c.attribute for c in simple}) == len(simple) or path[0].attribute == "x"
        assert Rule(simple).mask(frame).tolist() == Rule(path).mask(frame).tolist()
    assert Rule(_simplify(paths[0])).describe() == "c ONE_OF {a, c}"
    assert Rule(_simplify(paths[4])).describe() == "x <= 2 AND x > 1"
