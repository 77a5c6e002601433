import numpy as np
import pandas as pd
import pytest

from sortition.data import ExperimentData
from sortition.posterior import Posterior


def _frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"arm": rng.choice(["a", "b", "c"], n), "y": rng.normal(size=n),
                         "device": rng.choice(["mobile", "desktop"], n), "recency": rng.exponential(5, n)})


def test_experiment_data_contract():
    d = ExperimentData.from_frame(_frame(), control="b")
    assert d.arms == ("b", "a", "c") and d.control == "b" and d.n == 60 and d.n_arms == 3
    assert d.arm_index.dtype == np.int64 and set(d.arm_index) == {0, 1, 2}
    assert d.outcome.dtype == np.float64 and d.propensity is None and d.cell is None and d.round is None
    assert isinstance(d.covariates.index, pd.RangeIndex) and list(d.covariates) == ["device", "recency"]
    assert d.covariates["device"].iloc[0] in ("mobile", "desktop")  # raw values, not dummies
    f = d.frame()
    assert (f["arm"].to_numpy() == np.asarray(d.arms, dtype=object)[d.arm_index]).all()
    with pytest.raises(ValueError):
        d.outcome[0] = 1.0


def test_posterior_contract_segment_means_match_dense():
    d = ExperimentData.from_frame(_frame())
    draws = np.random.default_rng(1).normal(size=(60, 40, 2))
    p = Posterior.from_draws(draws, data=d)
    assert p.arms == d.arms and p.control == "a" and p.outcome_kind == "continuous" and p.n_draws == 40
    c = p.contrast_draws()
    assert c.dtype == np.float32 and c.shape == (60, 40, 2) and not c.flags.writeable
    mask = d.covariates["device"].eq("mobile").to_numpy()
    dense = c[mask].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(p.segment_mean_contrasts(mask), dense, rtol=1e-10)
    with pytest.raises(ValueError, match="no visitors"):
        p.segment_mean_contrasts(np.zeros(60, dtype=bool))
