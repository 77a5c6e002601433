import numpy as np
import pytest

from sortition.data import ExperimentData
from sortition.posterior import Posterior
from sortition.scenarios import SCENARIOS, Scenario, Truth, evaluate, generate, make_scenario


@pytest.mark.parametrize("outcome", ["continuous", "binary", "revenue"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_generate_shapes_and_separation(outcome, k):
    data, truth = generate("multi_winner", 500, arms=k, outcome=outcome, seed=1)
    assert isinstance(data, ExperimentData) and isinstance(truth, Truth)
    assert data.n_arms == k and data.arms[0] == "control" and truth.expected.shape == (500, k)
    assert truth.contrasts.shape == (500, k - 1) and truth.optimal_arm.shape == (500,)
    assert {"device", "channel", "country", "returning", "recency", "noise_1"} <= set(data.covariates)
    assert not any("truth" in c or "expected" in c for c in data.frame().columns)
    np.testing.assert_allclose(data.propensity, 1 / k)
    data.check_outcome(outcome)


def test_sample_outcomes_match_the_truth_on_average():
    rng = np.random.default_rng(0)
    for outcome in ("continuous", "binary", "revenue"):
        sc = make_scenario("storefront", outcome=outcome)
        v = sc.sample_visitors(60_000, rng)
        arm = rng.integers(0, 3, len(v))
        y = sc.sample_outcomes(v, arm, rng)
        exp = sc.truth(v).expected[np.arange(len(v)), arm]
        se = y.std() / np.sqrt(len(v))
        assert abs(y.mean() - exp.mean()) < 4 * se, outcome


def test_storefront_demo_has_segments_with_different_winners():
    sc = make_scenario("storefront")
    assert sc.outcome == "revenue" and sc.arms == ("control", "free_shipping", "bundle")
    v = sc.sample_visitors(20_000, np.random.default_rng(1))
    best = sc.truth(v).optimal_arm
    mobile, desktop = v["device"].eq("mobile").to_numpy(), v["device"].eq("desktop").to_numpy()
    assert np.bincount(best[mobile], minlength=3).argmax() == 1
    assert np.bincount(best[desktop], minlength=3).argmax() == 2


def test_every_scenario_has_heterogeneity_where_promised():
    v = make_scenario("homogeneous").sample_visitors(5000, np.random.default_rng(2))
    for name in SCENARIOS:
        tau = make_scenario(name, 3).truth(v).contrasts
        if name == "homogeneous":
            assert np.ptp(tau, axis=0).max() < 1e-9 and (tau > 0).all()
        else:
            assert np.ptp(tau[:, 0]) > 0.5


def test_same_seed_same_data():
    a, ta = generate("reversal", 300, arms=3, outcome="revenue", seed=9)
    b, tb = generate("reversal", 300, arms=3, outcome="revenue", seed=9)
    assert np.array_equal(a.outcome, b.outcome) and np.array_equal(ta.expected, tb.expected)


def test_bad_scenario_arguments():
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        make_scenario("nope")
    for k in (2, 4):  # 2 was silently taken as storefront's own 3 arms
        with pytest.raises(ValueError, match=rf"exactly 3 arms .*; got {k} \(leave arms out to use them\)"):
            make_scenario("storefront", k)
    assert make_scenario("reversal").n_arms == 2 and generate("storefront", 30)[0].arms[2] == "bundle"
    with pytest.raises(ValueError, match="weights"):
        generate("reversal", 100, arms=2, weights=[0.9, 0.2])
    sc = make_scenario("reversal", 2)
    v = sc.sample_visitors(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="arm_index"):
        sc.sample_outcomes(v, np.full(10, 2), np.random.default_rng(0))
    assert isinstance(sc, Scenario)


def test_evaluate_scores_a_perfect_and_a_shifted_posterior():
    data, truth = generate("reversal", 400, arms=3, seed=3)
    rng = np.random.default_rng(0)
    # each visitor's posterior is N(truth + offset, 0.1^2) with offset ~ N(0, 0.1^2): calibrated intervals
    centre = truth.contrasts + rng.normal(0, 0.1, (400, 2))
    draws = centre[:, None, :] + rng.normal(0, 0.1, (400, 2000, 2))
    good = evaluate(Posterior.from_draws(draws, data=data), truth)
    assert 0.07 < good.cate_rmse < 0.13 and 0.75 < good.coverage[0.8] < 0.85 and 0.85 < good.coverage[0.9] < 0.95
    assert all(good.ate_covered[0.9])
    bad = evaluate(Posterior.from_draws(draws + 1.0, data=data), truth)
    assert bad.cate_rmse > 0.9 and bad.coverage[0.9] == 0.0 and not any(bad.ate_covered[0.9])
