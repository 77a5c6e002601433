"""Jupyter: _repr_html_ of Posterior, PolicyTree, Allocation and RoundResult; to_frame() tables."""

import numpy as np
import pandas as pd
import pytest

from sortition.data import ExperimentData
from sortition.experiment import SequentialExperiment
from sortition.policy import fit_policy_tree, thompson_allocation
from sortition.posterior import fit

EVIL = "<script>x</script>"


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame({"arm": rng.choice(["control", EVIL], n), "device": rng.choice(["a", EVIL], n)})
    frame["y"] = rng.normal(1 + (frame["arm"] == EVIL) * (frame["device"] == "a"), 1.0)
    data = ExperimentData.from_frame(frame, arms=["control", EVIL], covariates=["device"])
    posterior = fit(data, engine="stratified", progress=False, seed=1)
    tree = fit_policy_tree(posterior, seed=1)
    return frame, posterior, tree, thompson_allocation(posterior, tree.segments)


def test_reprs_are_escaped_tables(fitted):
    frame, posterior, tree, allocation = fitted
    for obj in (posterior, tree, allocation, posterior.lift_summary()):
        page = obj._repr_html_()
        assert "<table>" in page and EVIL not in page and "&lt;script&gt;" in page


def test_to_frame(fitted):
    _, posterior, tree, allocation = fitted
    table = allocation.to_frame()
    assert list(table.columns) == ["control", EVIL] and list(table.index) == [s.id for s in tree.segments]
    assert np.allclose(table.sum(axis=1), 1.0)
    assert isinstance(allocation, dict) and allocation[tree.segments[0].id] == table.iloc[0].to_dict()
    lifts = posterior.lift_summary().to_frame()
    assert list(lifts["arm"]) == [EVIL] and lifts.loc[0, "mean"] == pytest.approx(
        posterior.lift_summary()[0].mean
    )
    assert posterior.lift_summary() == tuple(posterior.lift_summary())  # still a tuple


def test_round_result_repr(fitted):
    frame, *_ = fitted
    experiment = SequentialExperiment(["control", EVIL], engine="stratified", fit_options={"progress": False})
    rows = frame.assign(subject=range(len(frame)), outcome=frame["y"]).drop(columns=["y"])
    result = experiment.advance(rows)
    page = result._repr_html_()
    assert "Round 1" in page and EVIL not in page
    assert all(d.label in page for d in result.decisions[1:])
