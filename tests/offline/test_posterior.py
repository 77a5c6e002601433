import numpy as np
import pandas as pd
import pytest
from fit_settings import FAST

from sortition.data import ExperimentData
from sortition.posterior import Posterior, fit
from sortition.posterior import result as result_mod
from sortition.scenarios import evaluate, generate


def test_same_seed_same_draws_other_seed_differs():
    d, _ = generate("two_segments", 600, arms=3, outcome="binary", seed=3)
    a = fit(d, outcome="binary", seed=11, **FAST).contrast_draws()
    b = fit(d, outcome="binary", seed=11, **FAST).contrast_draws()
    c = fit(d, outcome="binary", seed=12, **FAST).contrast_draws()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    s1 = fit(d, outcome="binary", engine="stratified", seed=5, draws=30).contrast_draws()
    s2 = fit(d, outcome="binary", engine="stratified", seed=5, draws=30).contrast_draws()
    assert np.array_equal(s1, s2)


def test_binary_contrasts_are_probability_differences():
    d, _ = generate("homogeneous", 800, arms=2, outcome="binary", seed=4)
    p = fit(d, outcome="binary", seed=0, **FAST)
    c = p.contrast_draws()
    assert c.shape == (800, 50, 1) and c.dtype == np.float32
    assert np.all(np.abs(c) < 1) and 0 < p.baseline.mean() < 0.3  # control conversion ~0.09


def test_revenue_components_and_decomposition():
    d, t = generate("storefront", 3000, seed=2)
    p = fit(d, outcome="revenue", seed=1, **FAST)
    assert p.arms == ("control", "free_shipping", "bundle") and p.outcome_kind == "revenue"
    conv, sev = p.contrast_draws("conversion"), p.contrast_draws("severity")
    assert conv.shape == sev.shape == p.contrast_draws().shape
    assert np.all(np.abs(conv) < 1)
    # the truth's conversion lift for free shipping is +0.07 on mobile: the component must see it
    mobile = d.covariates["device"].eq("mobile").to_numpy()
    seg = p.segment_mean_contrasts(mobile, component="conversion").mean(axis=0)
    true = (t.conversion[mobile, 1] - t.conversion[mobile, 0]).mean()
    assert abs(seg[0] - true) < 0.04 and seg[0] > 0.02


def test_recorded_propensities_are_used_and_estimated_only_when_absent():
    d, _ = generate("two_segments", 600, arms=3, seed=5)
    recorded = fit(d, seed=0, **FAST)
    assert recorded.info["propensity"] == "recorded"
    assert recorded.info["average_effect"] == "one-step (recorded propensities)"
    bare, _ = generate("two_segments", 600, arms=3, seed=5, record_propensity=False)
    estimated = fit(bare, seed=0, **FAST)
    assert estimated.info["propensity"] == "estimated"
    # the one-step residuals divide by the estimated probability of the received arm (a uniform design here)
    assert estimated.info["average_effect"] == "one-step (estimated propensities)"
    one, other = estimated.average_effects(), recorded.average_effects()
    assert np.all(np.abs(one.mean(axis=0) - other.mean(axis=0)) < other.std(axis=0)), (one.mean(0), other.mean(0))


def test_save_load_round_trip(tmp_path):
    d, _ = generate("storefront", 800, seed=6)
    p = fit(d, outcome="revenue", engine="stratified", seed=0, draws=20)
    path = p.save(tmp_path / "post")
    q = Posterior.load(path)
    assert path.suffix == ".npz" and q.arms == p.arms and q.outcome_kind == "revenue"
    assert np.array_equal(q.contrast_draws(), p.contrast_draws())
    assert np.array_equal(q.contrast_draws("severity"), p.contrast_draws("severity"))
    assert np.array_equal(q.baseline, p.baseline) and q.info["engine"] == "stratified"
    assert (q.data.arm_index == d.arm_index).all() and (q.data.subject == d.subject).all()
    pd.testing.assert_frame_equal(q.data.covariates, d.covariates, check_dtype=False)
    np.load(path, allow_pickle=False)  # no pickled objects inside


def test_segment_means_are_chunked_and_exact(monkeypatch):
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(500, 30, 2))
    p = Posterior.from_draws(draws)
    monkeypatch.setattr(result_mod, "CHUNK_ELEMENTS", 60 * 7)  # 7 rows per chunk
    mask = rng.random(500) < 0.3
    np.testing.assert_allclose(p.segment_mean_contrasts(mask), draws[mask].astype(np.float32).mean(0), rtol=1e-5)
    lo, hi = p.cate_interval(0.8)
    np.testing.assert_allclose(lo, np.quantile(draws.astype(np.float32), 0.1, axis=1), rtol=1e-5)
    assert (hi > lo).all()


def test_lift_summary():
    rng = np.random.default_rng(1)
    draws = np.stack([rng.normal(0.5, 0.1, (50, 400)), rng.normal(-0.5, 0.1, (50, 400))], axis=2)
    p = Posterior.from_draws(draws, arms=["c", "t1", "t2"], baseline=np.full(400, 10.0))
    up, down = p.lift_summary(level=0.9)
    assert up.arm == "t1" and up.prob_positive == 1.0 and abs(up.mean - 0.5) < 0.01
    assert down.prob_positive == 0.0 and down.lower < down.mean < down.upper < 0
    assert abs(up.relative_mean - 0.05) < 0.002
    assert list(p.lift_frame().arm) == ["t1", "t2"]


def test_bad_fit_arguments():
    d, _ = generate("homogeneous", 200, seed=0)
    with pytest.raises(ValueError, match="outcome='poisson'"):
        fit(d, outcome="poisson")
    with pytest.raises(ValueError, match="engine='xgb'"):
        fit(d, engine="xgb")
    with pytest.raises(ValueError, match="must be 0/1"):
        fit(d, outcome="binary")  # continuous y
    with pytest.raises(TypeError, match="ExperimentData"):
        fit(d.frame())
    with pytest.raises(ValueError, match=r"shape \(n, S, K-1=2\)"):
        Posterior.from_draws(np.zeros((5, 4, 1)), arms=["a", "b", "c"])


def test_stratified_engine_recovers_segment_effects():
    d, t = generate("two_segments", 6000, arms=3, seed=7)
    p = fit(d, engine="stratified", strata=["returning"], draws=200, seed=0)
    ret = d.covariates["returning"].to_numpy()
    for mask in (ret, ~ret):
        est = p.segment_mean_contrasts(mask).mean(axis=0)
        np.testing.assert_allclose(est, t.contrasts[mask].mean(axis=0), atol=0.2)
    e = evaluate(p, t)
    assert e.coverage[0.9] > 0.7 and e.cate_rmse < 0.15


def test_stratified_binary_and_revenue_shapes():
    for outcome in ("binary", "revenue"):
        d, t = generate("reversal", 3000, arms=4, outcome=outcome, seed=8)
        p = fit(d, outcome=outcome, engine="stratified", draws=40, seed=0)
        assert p.contrast_draws().shape == (3000, 40, 3)
        mobile = d.covariates["device"].eq("mobile").to_numpy()
        desktop = d.covariates["device"].eq("desktop").to_numpy()
        assert p.info["strata"][0] == "device"
        assert p.segment_mean_contrasts(mobile)[:, 0].mean() > p.segment_mean_contrasts(desktop)[:, 0].mean()


def test_multi_arm_recorded_propensities_are_one_function_of_the_design():
    from sortition.posterior.propensity import propensity_matrix

    rng = np.random.default_rng(3)
    n = 900
    mobile = rng.random(n) < 0.5
    # an adaptive round: mobile gets 20/60/20, others 50/25/25
    probs = np.where(mobile[:, None], [0.2, 0.6, 0.2], [0.5, 0.25, 0.25])
    arm = (rng.random(n)[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    df = pd.DataFrame({"arm": arm, "y": rng.normal(size=n), "mobile": mobile,
                       "p": probs[np.arange(n), arm]})
    d = ExperimentData.from_frame(df, propensity="p", control=0)
    m, source = propensity_matrix(d, d.design_matrix(), seed=0, num_threads=1)
    assert source == "recorded" and m.shape == (n, 2)
    # each arm's probability, interpolated from its recorded values at every row, its own rows included:
    # rows with the same covariates get the same columns whatever arm they received
    np.testing.assert_allclose(m, probs[:, 1:], atol=0.08)
    for group in (mobile, ~mobile):
        assert np.ptp(m[group], axis=0).max() < 1e-12


def test_seeds_beyond_a_c_int_fit_and_bad_seeds_are_refused():
    data, _ = generate("homogeneous", 300, arms=2, outcome="continuous", seed=3)
    big = fit(data, draws=5, seed=2**40 + 7, progress=False, num_trees_mu=10, num_trees_tau=5, num_gfr=2)
    again = fit(data, draws=5, seed=2**40 + 7, progress=False, num_trees_mu=10, num_trees_tau=5, num_gfr=2)
    np.testing.assert_array_equal(big.contrast_draws(), again.contrast_draws())
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            fit(data, draws=5, seed=bad, progress=False)


def _one_step_posterior(n=4000, seed=0, model_bias=0.3):
    """A two-arm experiment (control 10%, effect 1.0) and a deliberately wrong model: its effect draws
    are ``model_bias`` too high and its arm means too; residuals as fit_bcf computes them."""
    rng = np.random.default_rng(seed)
    arm = (rng.random(n) > 0.1).astype(int)
    x = rng.normal(size=n)
    y = x + 1.0 * arm + rng.normal(size=n)
    frame = pd.DataFrame({"arm": np.array(["c", "t"])[arm], "y": y, "x": x, "propensity": np.where(arm, 0.9, 0.1)})
    data = ExperimentData.from_frame(frame, arm="arm", outcome="y", arms=("c", "t"), propensity="propensity",
                                     covariates=["x"])
    s = 40
    tau = np.full((n, s, 1), 1.0 + model_bias) + rng.normal(0, 0.01, (n, s, 1))
    mu = x[:, None] + 0.5 * model_bias + np.zeros((n, s))  # control mean off by half the effect's bias
    m = mu + arm[:, None] * tau[:, :, 0]
    e = (y[:, None] - m) / np.where(arm, 0.9, 0.1)[:, None]
    return Posterior.from_draws(tau, data=data, residuals={"contrast": e}, info={"seed": seed}), data


def test_one_step_average_effect_corrects_a_biased_model_and_is_seeded_and_chunked(monkeypatch):
    p, _ = _one_step_posterior()
    plug, one = p.mean_contrasts(), p.average_effects()
    assert abs(plug.mean() - 1.3) < 0.01  # the model's own average effect is 0.3 too high
    assert abs(one.mean() - 1.0) < 3 * one.std() and one.std() > 5 * plug.std()  # the bootstrap spread
    np.testing.assert_allclose(one.std(), np.sqrt(1 / 400 + 1 / 3600), rtol=0.35)  # the IPW standard error
    everyone = np.ones(p.n, dtype=bool)
    assert np.array_equal(one, p.average_effects(everyone))  # the same posterior gives the same draws
    assert p.average_effects() is one and not one.flags.writeable  # everyone's: computed once, read-only
    assert p.lift_summary(0.9)[0].mean == pytest.approx(one.mean())  # lift_summary reports the one-step one
    monkeypatch.setattr(result_mod, "CHUNK_ELEMENTS", 2 * 40 * 7)  # 7 rows per block of weights
    np.testing.assert_allclose(p.average_effects(everyone), one, rtol=1e-5)  # float32 block sums (plug-in)
    bare = Posterior.from_draws(p.contrast_draws(), data=p.data)  # no residuals: the plug-in mean
    assert np.array_equal(bare.average_effects(), bare.mean_contrasts())


def test_residuals_are_checked_and_saved(tmp_path):
    p, data = _one_step_posterior(n=300)
    with pytest.raises(ValueError, match="residuals 'contrast'"):
        Posterior.from_draws(p.contrast_draws(), data=data, residuals={"contrast": np.zeros((300, 3))})
    with pytest.raises(ValueError, match="without data"):
        Posterior.from_draws(p.contrast_draws(), residuals={"contrast": np.zeros((300, 40))})
    d, _ = generate("storefront", 800, seed=6)
    q = fit(d, outcome="revenue", seed=0, **FAST)
    assert set(q.residuals) == {"contrast", "conversion", "severity"}
    r = Posterior.load(q.save(tmp_path / "post"))
    for comp in (None, "conversion", "severity"):
        np.testing.assert_array_equal(r.average_effects(component=comp), q.average_effects(component=comp))
