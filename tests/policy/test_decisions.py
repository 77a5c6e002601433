"""recommend: one decision per scope, numbers from the draws, documented thresholds."""

import math

import numpy as np
import pandas as pd
import pytest

from sortition.policy import DecisionThresholds, Segment, recommend
from sortition.policy.decisions import recommendations
from sortition.rules import Condition, Rule

from .conftest import make_posterior


def _posterior(centre, sd=0.05, n=400, s=400, seed=5):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x": rng.uniform(0, 1, n)})
    draws = np.asarray(centre) + rng.normal(0, sd, size=(s, len(centre)))
    return make_posterior(np.broadcast_to(draws, (n, s, len(centre))).copy(), x), draws


@pytest.fixture
def posterior():
    # t1 clearly positive, t2 clearly negative, t3 unsure
    return _posterior([0.5, -0.5, 0.01])


def test_one_decision_per_scope_with_the_numbers_of_the_arm_it_ships(posterior):
    post, draws = posterior
    table = recommend(post, min_effect=0.1)
    assert len(table) == 1 and table["scope"].tolist() == ["overall"]
    row = table.iloc[0]
    assert (row["decision"], row["arm"], row["best_arm"]) == ("SHIP", "t1", "t1")
    lift = draws[:, 0]
    assert row["lift_mean"] == pytest.approx(lift.mean(), abs=1e-6)
    assert row["prob_positive"] == pytest.approx((lift > 0).mean())
    assert row["loss_if_ship"] == pytest.approx(np.maximum(-lift, 0).mean(), abs=1e-6)
    assert row["loss_if_not_ship"] == pytest.approx(np.maximum(lift, 0).mean(), abs=1e-6)
    assert row["lift_lower"] < row["lift_mean"] < row["lift_upper"]
    assert row["p_best"] == pytest.approx(1.0)
    assert recommendations(table)[0].label == "SHIP t1"


def test_stop_and_continue():
    post, draws = _posterior([-0.5, -0.4])  # every treatment clearly worse: keep control
    row = recommend(post).iloc[0]
    assert (row["decision"], row["best_arm"]) == ("STOP", "control")
    assert row["arm"] == "t2"  # the best-looking treatment is the one described
    assert row["lift_mean"] == pytest.approx(draws[:, 1].mean(), abs=1e-6)
    post, _ = _posterior([0.01, -0.5], sd=0.1)  # unsure
    row = recommend(post).iloc[0]
    assert row["decision"] == "CONTINUE" and row["value_of_next_round"] > 0.005
    assert row["reason"].startswith(f"{row['arm']} has P(lift > 0) = ")  # names the arm it is about
    # a practical threshold the unsure arm is unlikely to clear -> STOP
    assert recommend(post, min_effect=0.3).iloc[0]["decision"] == "STOP"


def test_confirmation_gates_ship(posterior):
    post, _ = posterior
    row = recommend(post, confirmed=set()).iloc[0]
    assert row["decision"] == "CONTINUE" and "not yet confirmed" in row["reason"]
    assert recommend(post, confirmed={("overall", "t1")}).iloc[0]["decision"] == "SHIP"


def test_two_treatments_both_confident_still_one_decision():
    post, _ = _posterior([0.5, 0.45])  # both beat control with certainty; t1 wins most draws
    table = recommend(post)
    assert len(table) == 1 and table.iloc[0]["decision"] == "SHIP"
    assert table.iloc[0]["arm"] == table.iloc[0]["best_arm"]


def test_thresholds_are_overridable_and_segments_reported(posterior):
    post, _ = posterior
    strict = DecisionThresholds(ship_probability=1.0, max_loss=0.0)
    table = recommend(post, thresholds=strict)
    assert table.iloc[0]["decision"] in ("SHIP", "CONTINUE")
    seg = Segment(4, Rule([Condition("x", "GT", 0.5)]), best_arm="t3")
    table = recommend(post, [seg])
    assert table["scope"].tolist() == ["overall", 4]
    assert table.iloc[1]["share"] == pytest.approx((post.data.covariates["x"] > 0.5).mean())
    assert (
        table.iloc[1]["best_arm"] == "t3" and table.iloc[1]["rule"] == "x > 0.5"
    )  # the segment's own winner


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


def test_each_scope_reads_the_lift_that_lift_summary_reports():
    # overall: the one-step average effect (a BCF fit keeps residuals, so it differs from the plug-in
    # mean of the draws); a segment: its mean's draws; both at the level lift_summary uses
    from fit_settings import FAST

    from sortition.posterior import fit
    from sortition.scenarios import generate

    data, _ = generate("storefront", 600, arms=3, seed=4)
    post = fit(data, seed=4, **FAST)
    mobile = Segment(1, Rule([Condition("device", "ONE_OF", ["mobile"])]), 0.5)
    table = recommend(post, [mobile], level=0.8)
    for row, lifts in zip(table.itertuples(), (post.lift_summary(0.8),
                                              post.lift_summary(0.8, mobile.rule.mask(data.covariates))),
                          strict=True):
        lift = next(x for x in lifts if x.arm == row.arm)
        numbers = (row.lift_mean, row.lift_lower, row.lift_upper)
        assert numbers == pytest.approx((lift.mean, lift.lower, lift.upper))
        assert row.prob_positive == pytest.approx(lift.prob_positive)
    plug_in = post.segment_mean_contrasts(np.ones(post.n, dtype=bool))[:, post.arms.index(table.arm[0]) - 1]
    assert abs(table.lift_mean[0] - plug_in.mean()) > 1e-3  # not the plug-in mean
