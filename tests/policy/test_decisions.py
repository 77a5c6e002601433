"""recommend: numbers from the draws and documented decisions."""

import math

import numpy as np
import pandas as pd
import pytest

from sortition.policy import DecisionThresholds, Segment, recommend
from sortition.rules import Condition, Rule

from .conftest import make_posterior


@pytest.fixture
def posterior():
    rng = np.random.default_rng(5)
    n, s = 400, 400
    x = pd.DataFrame({"x": rng.uniform(0, 1, n)})
    # t1 clearly positive, t2 clearly negative, t3 unsure
    centre = np.array([0.5, -0.5, 0.01])
    draws = centre + rng.normal(0, [0.05, 0.05, 0.05], size=(s, 3))
    return make_posterior(np.broadcast_to(draws, (n, s, 3)).copy(), x), draws


def test_overall_numbers_and_decisions(posterior):
    post, draws = posterior
    table = recommend(post, min_effect=0.1)
    assert list(table["arm"]) == ["t1", "t2", "t3"]
    assert list(table["decision"]) == ["SHIP", "STOP", "STOP"]
    t3 = table.iloc[2]
    lift = draws[:, 2]
    assert t3["lift_mean"] == pytest.approx(lift.mean(), abs=1e-6)
    assert t3["prob_positive"] == pytest.approx((lift > 0).mean())
    assert t3["loss_if_ship"] == pytest.approx(np.maximum(-lift, 0).mean(), abs=1e-6)
    assert t3["loss_if_not_ship"] == pytest.approx(np.maximum(lift, 0).mean(), abs=1e-6)
    assert t3["lift_lower"] < t3["lift_mean"] < t3["lift_upper"]
    # an open question has value in another round; a settled one has almost none
    assert t3["value_of_next_round"] > 0.005 > table.iloc[0]["value_of_next_round"]
    # without a practical threshold the unsure arm continues
    assert recommend(post)["decision"].tolist() == ["SHIP", "STOP", "CONTINUE"]


def test_thresholds_are_overridable_and_segments_reported(posterior):
    post, _ = posterior
    strict = DecisionThresholds(ship_probability=1.0, max_loss=0.0)
    table = recommend(post, thresholds=strict)
    assert table.iloc[0]["decision"] in ("SHIP", "CONTINUE")
    seg = Segment(4, Rule([Condition("x", "GT", 0.5)]))
    table = recommend(post, [seg])
    assert table["scope"].tolist() == ["overall"] * 3 + [4] * 3
    assert table.iloc[3]["share"] == pytest.approx((post.data.covariates["x"] > 0.5).mean())


def test_bad_inputs(posterior):
    post, draws = posterior
    with pytest.raises(TypeError, match="Posterior"):
        recommend(draws)
    with pytest.raises(ValueError, match="min_effect"):
        recommend(post, min_effect=-1)
    with pytest.raises(ValueError, match="ship_probability"):
        DecisionThresholds(ship_probability=2)
    with pytest.raises(ValueError, match="max_loss"):
        DecisionThresholds(max_loss=math.nan)
