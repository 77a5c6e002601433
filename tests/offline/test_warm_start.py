"""Warm-started BCF fits: statistically the same posterior as a cold refit, used only when compatible."""

import json

import numpy as np
import pytest
from fit_settings import FAST

from sortition.data import ExperimentData
from sortition.posterior import fit
from sortition.posterior.warm import KEPT_DRAWS, WarmStart
from sortition.scenarios import generate


def _rows(data: ExperimentData, n: int) -> ExperimentData:
    frame = data.frame().iloc[:n].reset_index(drop=True)
    roles = {k: v for k, v in data.columns.items() if v is not None}
    return ExperimentData.from_frame(frame, arms=data.arms, covariates=list(data.covariate_names), **roles)


def _quality(posterior, truth) -> tuple[float, float]:
    tau = truth.contrasts
    rmse = float(np.sqrt(((posterior.cate() - tau) ** 2).mean()))
    lo, hi = posterior.cate_interval(0.8)
    return rmse, float(((lo <= tau) & (tau <= hi)).mean())


def test_warm_start_matches_a_cold_refit_statistically():
    data, truth = generate("two_segments", 1500, arms=3, outcome="continuous", seed=7)
    previous = fit(_rows(data, 1000), seed=1, **FAST)
    assert previous.info["warm_start"] == "cold (no previous fit)"
    cold_fits = [fit(data, seed=s, **FAST) for s in (2, 3)]
    warm_fits = [fit(data, seed=s, warm_start=previous.warm_start, **FAST) for s in (2, 3)]
    cold = [_quality(p, truth) for p in cold_fits]
    assert all(p.info["warm_start"] == "warm" for p in warm_fits)
    warm = [_quality(p, truth) for p in warm_fits]
    cold_rmse, cold_cov = np.mean(cold, axis=0)
    warm_rmse, warm_cov = np.mean(warm, axis=0)
    assert warm_rmse <= 1.2 * cold_rmse + 0.01, (warm, cold)
    assert abs(warm_cov - cold_cov) <= 0.08, (warm, cold)
    assert warm_cov >= 0.6
    # a warm fit is its own posterior: different draws from the cold one with the same seed
    assert not np.array_equal(warm_fits[0].contrast_draws(), cold_fits[0].contrast_draws())


def test_warm_start_keeps_only_the_last_draws_and_round_trips():
    data, _ = generate("storefront", 800, arms=3, outcome="revenue", seed=3)
    p = fit(data, outcome="revenue", seed=0, **FAST)
    ws = p.warm_start
    assert set(ws.models) == {"conversion", "severity"} and ws.outcome == "revenue" and ws.n_arms == 3
    assert ws.columns == tuple(data.encoding.names)
    for text in ws.models.values():
        assert json.loads(text)["num_samples"] == KEPT_DRAWS
    back = WarmStart.from_json(json.loads(json.dumps(ws.to_json())))
    assert back == ws
    again = fit(data, outcome="revenue", seed=0, warm_start=back, **FAST)
    same = fit(data, outcome="revenue", seed=0, warm_start=ws, **FAST)
    assert again.info["warm_start"] == "warm"
    assert np.array_equal(again.contrast_draws(), same.contrast_draws())  # deterministic given (seed, start)
    with pytest.raises(ValueError, match="not a Sortition warm start"):
        WarmStart.from_json({"format": "other"})


def test_incompatible_warm_start_falls_back_to_a_cold_fit_and_says_why():
    data, _ = generate("two_segments", 500, arms=2, outcome="binary", seed=4)
    ws = fit(data, outcome="binary", seed=0, **FAST).warm_start
    frame = data.frame()
    frame.loc[0, "country"] = "a level never seen"  # one new one-hot column
    roles = {k: v for k, v in data.columns.items() if v is not None}
    changed = ExperimentData.from_frame(frame, arms=data.arms, covariates=list(data.covariate_names), **roles)
    p = fit(changed, outcome="binary", seed=0, warm_start=ws, **FAST)
    assert p.info["warm_start"].startswith("cold (the covariate encoding changed")
    cont = fit(data, outcome="continuous", seed=0, warm_start=ws, **FAST)
    assert cont.info["warm_start"] == "cold (outcome 'continuous' differs from the previous fit's 'binary')"
    with pytest.raises(TypeError, match="warm_start must be"):
        fit(data, outcome="binary", warm_start=json.dumps(ws.to_json()), **FAST)
    with pytest.raises(ValueError, match="warm_burnin"):
        fit(data, outcome="binary", warm_start=ws, warm_burnin=-1, **FAST)


def test_a_warm_fit_keeps_the_cold_fits_draws_and_records_the_sweeps_it_ran():
    data, _ = generate("two_segments", 400, arms=3, outcome="continuous", seed=5)
    previous = fit(_rows(data, 250), seed=1, **FAST)
    cold = fit(data, seed=2, **FAST)
    warm = fit(data, seed=2, warm_start=previous.warm_start, warm_burnin=4, **FAST)
    assert warm.info["warm_start"] == "warm"
    # the same retained draws: a warm start saves only the grow-from-root sweeps, never draws
    assert warm.n_draws == cold.n_draws == FAST["draws"]
    assert warm.contrast_draws().shape == cold.contrast_draws().shape == (400, FAST["draws"], 2)
    assert (cold.info["num_gfr"], cold.info["num_burnin"]) == (FAST["num_gfr"], 0)
    assert (warm.info["num_gfr"], warm.info["num_burnin"]) == (0, 4)
    # a refused warm start (another covariate encoding) is a cold fit and records the cold sweeps
    roles = {k: v for k, v in data.columns.items() if v is not None}
    fewer = ExperimentData.from_frame(data.frame(), arms=data.arms, covariates=list(data.covariate_names)[:-1],
                                      **roles)
    refused = fit(data, seed=2, warm_start=fit(fewer, seed=1, **FAST).warm_start, warm_burnin=4, **FAST)
    assert refused.info["warm_start"].startswith("cold (the covariate encoding changed")
    assert (refused.info["num_gfr"], refused.info["num_burnin"]) == (FAST["num_gfr"], 0)
    assert np.array_equal(refused.contrast_draws(), cold.contrast_draws())  # the same fit as a plain cold one
