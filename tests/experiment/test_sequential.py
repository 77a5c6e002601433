"""The round state machine: commit only on success, drop losers, graduation proposals.

The policy step is replaced by a small fake here (the real one is exercised by the end-to-end
tests), so these tests pin the experiment's own logic.
"""

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from sortition.experiment import SequentialExperiment, expected_loss, steps
from sortition.experiment.loop_policy import LoopPolicy
from sortition.policy.summary import SegmentSummary
from sortition.rules import Condition, Rule
from sortition.scenarios import make_scenario

from .conftest import draw_round


@dataclass
class FakeSegment:
    id: int
    rule: Rule
    share: float
    arm_best_probabilities: dict
    best_arm: str


class FakeTree:
    def __init__(self, segments, summary):
        self.segments = segments
        self.summary = summary


def _fake_policy(win=None):
    """Two segments by channel; win frequencies from the posterior unless ``win`` fixes them."""

    def fit_tree(posterior, extra_masks=None, **kw):
        rules = [
            Rule((Condition("channel", "ONE_OF", ["search", "social"]),)),
            Rule((Condition("channel", "NOT_ONE_OF", ["search", "social"]),)),
        ]
        segs = []
        for i, rule in enumerate(rules):
            mask = np.asarray(rule.mask(posterior.data), bool)
            m = posterior.segment_mean_contrasts(mask)
            values = np.concatenate([np.zeros((m.shape[0], 1)), m], axis=1)
            winners = np.where(m.max(axis=1) > 0, values.argmax(axis=1), 0)
            freq = np.bincount(winners, minlength=len(posterior.arms)) / len(winners)
            probs = dict(zip(posterior.arms, freq)) if win is None else dict(win)
            best = max(probs, key=probs.get)
            segs.append(FakeSegment(i, rule, float(mask.mean()), probs, best))
        masks = np.stack([np.asarray(seg.rule.mask(posterior.data), bool) for seg in segs])
        return FakeTree(segs, SegmentSummary.compute(posterior, [seg.id for seg in segs], masks, extra_masks))

    return LoopPolicy(
        tree=fit_tree,
        allocate=lambda post, segs, eps, summary: {s.id: s.arm_best_probabilities for s in segs},
        population=lambda post, eps, summary: {a: 1 / len(post.arms) for a in post.arms},
        recommend=lambda post, segs, summary, **decision: None,
    )


def _experiment(**kw):
    scenario = make_scenario("multi_winner", 4)
    opts = dict(outcome="continuous", engine="stratified", fit_options={"progress": False, "draws": 200}, seed=1,
                policy=_fake_policy())
    opts.update(kw)
    return scenario, SequentialExperiment(scenario.arms, **opts)


def test_failed_round_leaves_experiment_unchanged():
    scenario, exp = _experiment()
    rng = np.random.default_rng(0)
    rows, _ = draw_round(exp.plan_, scenario, 600, rng, 0)
    exp.advance(rows)
    before = (exp.round_, exp.plan_, exp.results_, exp.active_arms_, exp.posterior_, exp.configuration(created_at="x"))
    data_before = exp.data_

    rows, _ = draw_round(exp.plan_, scenario, 600, rng, 1)

    def boom(*a, **k):
        raise RuntimeError("policy step failed")

    exp.policy = replace(exp.policy, allocate=boom)
    with pytest.raises(RuntimeError, match="policy step failed"):
        exp.advance(rows)
    after = (exp.round_, exp.plan_, exp.results_, exp.active_arms_, exp.posterior_, exp.configuration(created_at="x"))
    assert after == before
    pd.testing.assert_frame_equal(exp.data_, data_before)

    # bad data is refused before anything changes, too
    bad = rows.copy()
    bad.loc[3, "arm"] = "nope"
    with pytest.raises(ValueError, match=r"column 'arm'.*rows \[3\]"):
        exp.advance(bad)
    with pytest.raises(ValueError, match="subjects already seen"):
        exp.advance(exp.data_.iloc[:10])
    assert exp.round_ == 1

    # the same round retried after the failure goes through
    exp.policy = _fake_policy()
    result = exp.advance(rows)
    assert exp.round_ == 2 and result.round == 1 and result.n_total == 1200


def test_drop_a_loser_after_two_rounds():
    scenario, exp = _experiment(policy=_fake_policy(win={"control": 0.3, "arm_1": 0.4, "arm_2": 0.3, "arm_3": 0.0}))
    rng = np.random.default_rng(1)
    r0 = exp.advance(draw_round(exp.plan_, scenario, 400, rng, 0)[0])
    assert r0.dropped == () and "arm_3" in exp.active_arms_
    assert exp.plan_.segment(0).arm_probabilities["arm_3"] > 0
    r1 = exp.advance(draw_round(exp.plan_, scenario, 400, rng, 1)[0])
    assert r1.dropped == ("arm_3",)
    assert exp.active_arms_ == ("control", "arm_1", "arm_2")
    for seg in (*exp.plan_.segments, exp.plan_.default):
        assert seg.arm_probabilities["arm_3"] == 0.0
        assert seg.arm_probabilities["control"] >= 0.05
        # explore now spreads over the three active arms
        assert seg.cells["explore"]["arm_1"] == pytest.approx(0.05 / 3)
    config = exp.configuration()
    variations = {s["variationKey"] for a in config["flags"][exp.key]["allocations"] for s in a["splits"]}
    assert "arm_3" not in variations


def test_loser_streak_resets():
    scenario, exp = _experiment()
    rng = np.random.default_rng(2)
    exp.policy = _fake_policy(win={"control": 0.5, "arm_1": 0.5, "arm_2": 0.0, "arm_3": 0.0})
    exp.advance(draw_round(exp.plan_, scenario, 300, rng, 0)[0])
    exp.policy = _fake_policy(win={"control": 0.4, "arm_1": 0.4, "arm_2": 0.2, "arm_3": 0.0})
    r1 = exp.advance(draw_round(exp.plan_, scenario, 300, rng, 1)[0])
    assert r1.dropped == ("arm_3",)  # arm_2 recovered in round 1: kept
    assert "arm_2" in exp.active_arms_


def test_graduation_is_proposed_after_sustained_rounds_and_never_shipped():
    scenario = make_scenario("homogeneous", 2)
    exp = SequentialExperiment(
        scenario.arms, outcome="continuous", engine="stratified", fit_options={"progress": False},
        graduation_rounds=2, graduation_loss=0.01, seed=3,
        policy=replace(_fake_policy(), recommend=LoopPolicy().recommend),  # the real decisions
    )
    rng = np.random.default_rng(3)
    r0 = exp.advance(draw_round(exp.plan_, scenario, 3000, rng, 0)[0])
    assert r0.graduations == ()
    # one decision per scope, in graduation's vocabulary: confident but not sustained yet -> CONTINUE
    assert [d.scope for d in r0.decisions] == ["overall", 0, 1]
    assert [d.decision for d in r0.decisions] == ["CONTINUE"] * 3
    assert all("not yet confirmed" in d.reason for d in r0.decisions[1:])
    r1 = exp.advance(draw_round(exp.plan_, scenario, 3000, rng, 1)[0])
    assert {g.arm for g in r1.graduations} == {"arm_1"}
    assert all(g.rounds == 2 and g.prob_positive >= 0.95 for g in r1.graduations)
    # SHIP exactly where a graduation is proposed; overall ships once every segment graduated the arm
    shipped = {d.scope: d.arm for d in r1.decisions if d.decision == "SHIP"}
    segment_ids = {s.description: s.id for s in r1.segments}
    assert shipped == {"overall": "arm_1", **{segment_ids[g.segment]: g.arm for g in r1.graduations}}
    assert r1.decision("overall").label == "SHIP arm_1"
    # a proposal only: control and explore cells still run
    for seg in exp.plan_.segments:
        assert seg.arm_probabilities["control"] >= 0.05 + 0.05 / 2 - 1e-12


def test_round_result_contents():
    scenario, exp = _experiment()
    rng = np.random.default_rng(4)
    rows, _ = draw_round(exp.plan_, scenario, 800, rng, 0)
    result = exp.advance(rows)
    assert result.n_round == 800 and result.plan is exp.plan_ and exp.plan_.round == 1
    assert [c.cell for c in result.cells] == ["control", "explore", "optimized"]
    control_cell = result.cells[0]
    assert control_cell.model_lift == 0.0 and control_cell.empirical_lift == 0.0
    assert sum(c.n for c in result.cells) == 800
    assert [lift.arm for lift in result.lifts] == ["arm_1", "arm_2", "arm_3"]
    assert set(result.ipw_arm_means) == set(scenario.arms)
    for seg in result.segments:
        assert sum(seg.arm_probabilities.values()) == pytest.approx(1.0)
        assert min(seg.expected_loss.values()) >= 0
    assert len(exp.plans_) == 2


def test_ipw_means_undo_adaptive_allocation():
    # arm t is served mostly to high-baseline visitors: raw means are biased, IPW is not
    rng = np.random.default_rng(5)
    n = 40000
    high = rng.random(n) < 0.5
    p_t = np.where(high, 0.9, 0.1)
    t = rng.random(n) < p_t
    y = np.where(high, 10.0, 0.0) + rng.normal(0, 1, n)  # no effect of t at all
    frame = pd.DataFrame(
        {"subject": np.arange(n), "arm": np.where(t, "t", "c"), "outcome": y,
         "propensity": np.where(t, p_t, 1 - p_t), "high": high}
    )
    from sortition.data import ExperimentData

    data = ExperimentData.from_frame(frame, arm="arm", outcome="outcome", subject="subject", arms=["c", "t"],
                                     propensity="propensity")
    means = steps.ipw_arm_means(data)
    assert abs(means["t"] - means["c"]) < 0.3
    assert y[t].mean() - y[~t].mean() > 5


def test_expected_loss():
    draws = np.array([[1.0, -1.0], [-1.0, 2.0]])
    loss = expected_loss(draws, ("c", "a", "b"))
    assert loss == {"c": 1.5, "a": 1.5, "b": 1.0}
    assert expected_loss(np.array([[1.0], [1.0]]), ("c", "a")) == {"c": 1.0, "a": 0.0}


def test_constructor_validation():
    with pytest.raises(ValueError, match="arms"):
        SequentialExperiment(["only"])
    with pytest.raises(ValueError, match="min_control_weight"):
        SequentialExperiment(["c", "t"], min_control_weight=0.7, min_explore_weight=0.5)
    with pytest.raises(ValueError, match="drop_after"):
        SequentialExperiment(["c", "t"], drop_after=0)
    with pytest.raises(ValueError, match="resegment_min_gain must be a non-negative number"):
        SequentialExperiment(["c", "t"], resegment_min_gain=-0.01)
    with pytest.raises(ValueError, match=r"settle_rounds must be a non-negative integer .* got 1\.5"):
        SequentialExperiment(["c", "t"], settle_rounds=1.5)
    assert SequentialExperiment(["c", "t"], settle_rounds=0).settle_rounds == 0
    with pytest.raises(TypeError, match="DataFrame"):
        SequentialExperiment(["c", "t"]).advance({"arm": []})
