"""The BCF engine's per-visitor draws: stochtree's in-sample arrays for the fitted rows, a prediction only
for the visitors outside them; both equal to predicting the sampled forests at every visitor."""

import numpy as np
import pytest
from fit_settings import FAST
from scipy.special import ndtr

from sortition.posterior import fit
from sortition.posterior.bcf import BCFSettings, fit_bcf_forest
from sortition.posterior.propensity import propensity_matrix
from sortition.scenarios import generate

SETTINGS = BCFSettings(num_trees_mu=FAST["num_trees_mu"], num_trees_tau=FAST["num_trees_tau"],
                       num_gfr=FAST["num_gfr"], draws=20, num_threads=1)


class Recorder:
    """Per stochtree fit, its forests predicted at every visitor ``x`` (stochtree's own predict, run right
    after sampling, before the warm-start trim drops draws): mu (n, S), tau (n, S, K-1), sigma2 (S,) or None."""

    def __init__(self) -> None:
        self.fits: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.x: np.ndarray | None = None
        self.propensity: np.ndarray | None = None

    def at(self, x: np.ndarray, propensity: np.ndarray) -> None:
        self.x, self.propensity = x, propensity


@pytest.fixture
def reference(monkeypatch) -> Recorder:
    from stochtree import BCFModel

    sample = BCFModel.sample
    rec = Recorder()

    def recorded(model, *a, **kw):
        sample(model, *a, **kw)
        n, s, k1 = rec.x.shape[0], model.num_samples, kw["Z_train"].shape[1]
        out = model.predict(X=rec.x, Z=np.zeros((n, k1)), propensity=rec.propensity, terms=["mu", "tau"])
        sigma2 = np.array(model.global_var_samples) if model.sample_sigma2_global else None
        rec.fits.append((out["mu_hat"].reshape(n, s), out["tau_hat"].reshape(n, s, k1), sigma2))

    monkeypatch.setattr(BCFModel, "sample", recorded)
    return rec


def _inputs(name: str, n: int, arms: int, outcome: str, seed: int):
    data, _ = generate(name, n, arms=arms, outcome=outcome, seed=seed)
    x = data.design_matrix()
    prop, _ = propensity_matrix(data, x, seed, 1)
    return data, x, prop


def _assert_same(draws, mu, tau) -> None:
    scale = max(1.0, float(np.abs(mu).max()), float(np.abs(tau).max()))
    assert draws.mu.shape == mu.shape and draws.tau.shape == tau.shape
    assert np.max(np.abs(draws.mu - mu)) <= 1e-10 * scale
    assert np.max(np.abs(draws.tau - tau)) <= 1e-10 * scale


@pytest.mark.parametrize("arms", [2, 3])
@pytest.mark.parametrize("kind", ["continuous", "binary", "revenue"])
def test_per_visitor_draws_equal_the_forests_predicted_at_every_visitor(reference, kind, arms):
    """Each kind's models: all rows (continuous; binary and revenue's probit conversion) or a subset
    (revenue's order value on converters), cold and warm-started from the cold fit's last draw."""
    world = "storefront" if arms == 3 else "reversal"  # storefront has 3 arms (it once took arms=2 for 3)
    data, x, prop = _inputs(world, 300, arms, "revenue" if kind == "revenue" else "continuous", arms)
    assert data.n_arms == arms
    y = data.outcome
    if kind == "binary":
        y = (y > np.median(y)).astype(float)
    rows = np.flatnonzero(y > 0) if kind == "revenue" else None
    if kind == "revenue":
        y = np.where(y > 0, np.log(np.where(y > 0, y, 1.0)), 0.0)
        assert 0 < rows.size < data.n  # a strict subset: both stochtree's arrays and the prediction used
    reference.at(x, prop)
    cold = fit_bcf_forest(x, data.arm_index, y, arms, prop, SETTINGS, seed=5, probit=kind == "binary", rows=rows)
    warm = fit_bcf_forest(x, data.arm_index, y, arms, prop, SETTINGS, seed=6, probit=kind == "binary", rows=rows,
                          previous=cold.last_draw)
    assert len(reference.fits) == 2
    for draws, (mu, tau, _) in zip((cold, warm), reference.fits, strict=True):
        _assert_same(draws, mu, tau)
    assert not np.allclose(cold.tau, warm.tau)  # two different fits were compared, not one twice


def test_every_row_fitted_needs_no_prediction(reference):
    """``rows`` naming every visitor (e.g. all converted): no test set, stochtree's arrays alone."""
    data, x, prop = _inputs("storefront", 200, 3, "continuous", 1)
    reference.at(x, prop)
    rows = np.arange(data.n)[::-1]  # any order
    draws = fit_bcf_forest(x, data.arm_index, data.outcome, 3, prop, SETTINGS, seed=2, probit=False, rows=rows)
    _assert_same(draws, *reference.fits[0][:2])


def test_revenue_fit_uses_both_models_draws(reference):
    """End to end: a revenue fit's contrasts are those of the two models' recorded predictions."""
    data, x, prop = _inputs("storefront", 400, 3, "revenue", 4)
    reference.at(x, prop)
    post = fit(data, outcome="revenue", seed=3, **{**FAST, "draws": 20})
    (mu_c, tau_c, _), (mu_s, tau_s, sigma2) = reference.fits
    half_s2 = 0.5 * sigma2[None, :]
    p0, pk = ndtr(mu_c), ndtr(mu_c[:, :, None] + tau_c)
    v0, vk = np.exp(mu_s + half_s2), np.exp(mu_s[:, :, None] + tau_s + half_s2[:, :, None])
    expected = pk * vk - (p0 * v0)[:, :, None]
    got = post.contrast_draws()
    assert got.shape == expected.shape
    # float32 storage of the draws
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
