"""Large inputs (issue 13 §8): the stratified engine keeps one set of draws per stratum, never per
visitor; the policy-tree search is bounded by a subsample; BCF refuses sizes its draws cannot hold.

The 10M-row figure itself is measured by ``benchmarks/faults_scale.py`` (not a timed test)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from sortition.data import ExperimentData
from sortition.policy import fit_policy_tree
from sortition.posterior import Posterior, fit


def _data(n: int, seed: int = 0, missing: bool = False) -> ExperimentData:
    rng = np.random.default_rng(seed)
    country = pd.Categorical.from_codes(rng.integers(0, 6, n), [f"c{i}" for i in range(6)])
    if missing:
        country = pd.Series(country).where(rng.random(n) > 0.05)
    arm = rng.integers(0, 3, n)
    y = np.where(rng.random(n) < 0.1 + 0.03 * (arm == 1), rng.lognormal(2.0, 0.5, n), 0.0)
    frame = pd.DataFrame({"arm": np.array(["control", "a", "b"])[arm], "y": y, "country": country,
                          "device": rng.choice(["mobile", "desktop"], n), "age": rng.integers(18, 80, n)})
    return ExperimentData.from_frame(frame, arm="arm", outcome="y", arms=["control", "a", "b"])


@pytest.mark.parametrize("outcome", ["continuous", "binary", "revenue"])
def test_grouped_draws_give_the_same_answers_as_per_visitor_draws(outcome):
    data = _data(3000, missing=True)
    if outcome == "binary":
        data = ExperimentData.from_frame(data.frame().assign(y=lambda f: (f["y"] > 0).astype(float)),
                                         arm="arm", outcome="y", arms=list(data.arms))
    grouped = fit(data, outcome, engine="stratified", draws=40, seed=3, progress=False)
    n_strata = grouped.info["n_strata"]
    assert grouped.rows is not None and grouped._draws.shape[0] == n_strata < 50  # per stratum, not per visitor
    expanded = Posterior.from_draws(grouped.contrast_draws(), data=data, outcome=outcome,
                                    baseline=grouped.baseline,
                                    components={k: grouped.contrast_draws(k) for k in grouped.components})
    masks = np.stack([data.covariates["device"].to_numpy() == "mobile", data.covariates["age"].to_numpy() < 40])
    np.testing.assert_allclose(grouped.segments_mean_contrasts(masks), expanded.segments_mean_contrasts(masks),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grouped.mean_contrasts(), expanded.mean_contrasts(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grouped.cate(), expanded.cate(), rtol=1e-4, atol=1e-5)
    for a, b in zip(grouped.cate_interval(0.8), expanded.cate_interval(0.8), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name in grouped.components:
        np.testing.assert_allclose(grouped.mean_contrasts(name), expanded.mean_contrasts(name), rtol=1e-4, atol=1e-5)
    for x, y in zip(grouped.lift_summary(), expanded.lift_summary(), strict=True):
        assert (x.mean, x.prob_positive) == pytest.approx((y.mean, y.prob_positive), rel=1e-4, abs=1e-5)


def test_grouped_posterior_saves_and_loads(tmp_path):
    data = _data(2000)
    post = fit(data, "revenue", engine="stratified", draws=20, seed=1, progress=False)
    back = Posterior.load(post.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(back.rows, post.rows)
    np.testing.assert_array_equal(back.mean_contrasts(), post.mean_contrasts())


def test_the_stratified_fit_memory_does_not_grow_with_draws_times_visitors():
    data = _data(400_000, seed=2)
    tracemalloc.start()
    try:
        post = fit(data, "revenue", engine="stratified", draws=100, seed=0, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Before: (n, S, K-1) float32 draws x 3 (total, conversion, severity) = 960 MB, plus float64 scratch.
    assert peak < 150 * 1024**2, f"peak {peak / 1024**2:.0f} MB"
    assert post.n == 400_000


def test_the_tree_search_runs_on_a_bounded_subsample_and_segments_cover_every_visitor():
    data = _data(6000, seed=4)
    post = fit(data, "revenue", engine="stratified", draws=30, seed=0, progress=False)
    small = fit_policy_tree(post, max_depth=2, n_bootstrap=2, max_rows=2000)
    assert sum(s.share for s in small.segments) == pytest.approx(1.0)
    full = fit_policy_tree(post, max_depth=2, n_bootstrap=2, max_rows=None)
    same = fit_policy_tree(post, max_depth=2, n_bootstrap=2, max_rows=6000)  # n <= max_rows: all rows
    assert [s.rule for s in same.segments] == [s.rule for s in full.segments]
    with pytest.raises(ValueError, match="max_rows must be"):
        fit_policy_tree(post, max_rows=10)


def test_bcf_refuses_a_size_its_draws_cannot_hold_and_names_the_limit_and_the_alternative():
    # revenue, 3 arms, 1,000 draws: 3.4 GB of draws and one-step residuals (at 100 draws: 600k rows)
    data = _data(100_000, seed=5)
    with pytest.raises(ValueError, match=r"limit is 2 GB, i.e. at most 59,652 visitors .*--engine stratified"):
        fit(data, "revenue", engine="bcf", draws=1000, progress=False)
