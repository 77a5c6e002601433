"""Data the BCF engine cannot fit on is refused before any fitting, with the user's column named;
data it can fit on (one covariate column) is fitted, warm start or not."""

import numpy as np
import pandas as pd
import pytest
from fit_settings import FAST

from sortition.data import ExperimentData
from sortition.posterior import fit
from sortition.workflows.demo import prepare_analysis

SMALL = {**FAST, "draws": 10, "num_gfr": 2}


def _data(n: int, y: np.ndarray | None = None, covariates: tuple[str, ...] = ("x", "z"),
          seed: int = 0) -> ExperimentData:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"arm": np.resize(["a", "b"], n), "x": rng.normal(size=n), "z": rng.normal(size=n),
                          "sales": rng.normal(size=n) if y is None else y})
    return ExperimentData.from_frame(frame[["arm", "sales", *covariates]], arm="arm", outcome="sales")


def test_a_single_covariate_column_fits_and_says_why_it_stays_cold():
    # stochtree 0.4.5 cannot write such a model: the fit itself used to fail on saving its warm start
    posterior = fit(_data(300, covariates=("x",)), **SMALL)
    assert posterior.cate().shape == (300, 1)
    assert posterior.warm_start is None
    assert posterior.info["warm_start"].startswith("cold (one covariate column")


@pytest.mark.parametrize("outcome, value, words", [
    ("binary", 0.0, "outcome column 'sales' is 0 in all 400 rows: no visitor converted"),
    ("revenue", 0.0, "outcome column 'sales' is 0 in all 400 rows: no visitor converted"),
    ("binary", 1.0, "outcome column 'sales' is 1 in all 400 rows: every visitor converted"),
    ("revenue", 5.0, "outcome='revenue' is above 0 in all 400 rows: the BCF engine's conversion model needs"),
])
def test_an_outcome_with_no_conversion_or_no_non_conversion_is_refused(outcome, value, words):
    with pytest.raises(ValueError, match=words):
        fit(_data(400, np.full(400, value)), outcome=outcome, **SMALL)


def test_revenue_earned_from_everyone_is_fitted_by_the_stratified_engine():
    rng = np.random.default_rng(3)
    data = _data(400, rng.lognormal(size=400))
    posterior = fit(data, outcome="revenue", engine="stratified", progress=False)
    assert np.isfinite(posterior.cate()).all()


def test_revenue_with_too_few_converters_is_refused_naming_the_counts():
    y = np.zeros(1000)
    y[[1, 2, 3, 4, 5]] = 10.0  # 5 converters: arm b has 3, arm a 2
    with pytest.raises(ValueError, match=r"at least 11 of them .* arms \('a', 'b'\) have \[2, 3\]"):
        fit(_data(1000, y), outcome="revenue", **SMALL)


def test_too_few_rows_are_refused_with_the_minimum():
    with pytest.raises(ValueError, match="needs at least 11 rows .* the data have 10"):
        fit(_data(10), **SMALL)
    assert fit(_data(11), **SMALL).cate().shape == (11, 1)


def test_no_covariates_are_refused_by_the_engine_and_by_analyze():
    with pytest.raises(ValueError, match="no covariate columns"):
        fit(_data(100, covariates=()), **SMALL)
    frame = pd.DataFrame({"arm": ["control", "b"] * 50, "y": np.arange(100.0)})
    with pytest.raises(ValueError, match=r"no covariate columns besides \['arm', 'y'\]"):
        prepare_analysis(frame, outcome="y", outcome_kind="continuous")


@pytest.mark.parametrize("kind", [None, "binary", "revenue"])
def test_analyze_names_the_users_column_when_nothing_converted(kind):
    frame = pd.DataFrame({"arm": ["control", "b"] * 50, "device": ["m", "d"] * 50, "bought": 0})
    with pytest.raises(ValueError, match="outcome column 'bought' is 0 in all 100 rows"):
        prepare_analysis(frame, outcome="bought", outcome_kind=kind)
