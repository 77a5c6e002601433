"""Stable segments: last round's segments are kept unless the new tree is better with high probability;
churn is the share of visitors whose segment or served arm changed."""

import numpy as np
import pytest

from sortition.experiment import SequentialExperiment, make_plan
from sortition.experiment import steps
from sortition.policy import fit_policy_tree, policy_tree_from_rules
from sortition.posterior import fit
from sortition.report.facts import churn_cap_note, segment_change_text
from sortition.rules import Condition, Rule
from sortition.scenarios import generate, make_scenario

from .conftest import draw_round

MOBILE = Rule((Condition("device", "ONE_OF", ["mobile"]),))
NOT_MOBILE = Rule((Condition("device", "NOT_ONE_OF", ["mobile"]),))


def test_churn_counts_visitors_whose_segment_or_served_arm_changed():
    data, _ = generate("storefront", 400, arms=3, seed=1)
    arms = data.arms
    win = {arms[0]: 0.1, arms[1]: 0.8, arms[2]: 0.1}
    other = {arms[0]: 0.1, arms[1]: 0.1, arms[2]: 0.8}
    a = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: win, 1: win})
    mobile = data.covariates["device"].eq("mobile").to_numpy()
    assert steps.churn(a, a, data) == 0.0
    b = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: win, 1: other})  # non-mobile visitors change arm
    assert steps.churn(a, b, data) == pytest.approx(1 - mobile.mean())
    c = make_plan(arms, [(0, NOT_MOBILE), (1, MOBILE)], {0: win, 1: win})  # same groups, other order
    assert steps.churn(a, c, data) == 0.0
    # the same groups written by other rules: no churn
    other_words = Rule((Condition("device", "NOT_ONE_OF", ["desktop", "tablet"]),))
    assert not data.covariates["device"].isna().any()
    e = make_plan(arms, [(0, other_words), (1, NOT_MOBILE)], {0: win, 1: win})
    assert steps.churn(a, e, data) == 0.0
    # a new split of the non-mobile visitors: those not in the larger part moved
    returning = data.covariates["returning"].to_numpy(bool)
    d = make_plan(arms, [(0, MOBILE), (1, Rule((Condition("returning", "ONE_OF", ["true"]),))), (2, NOT_MOBILE)],
                  {0: win, 1: win, 2: win})
    rest = ~mobile
    part = (rest & returning).sum() < (rest & ~returning).sum()  # the smaller part of the rest moved
    moved = rest & (returning if part else ~returning)
    assert steps.churn(a, d, data) == pytest.approx(moved.mean())


def test_new_tree_replaces_kept_segments_only_with_high_posterior_probability():
    data, _ = generate("storefront", 600, arms=3, outcome="continuous", seed=2)
    post = fit(data, outcome="continuous", engine="stratified", draws=200, seed=0)
    new = fit_policy_tree(post, n_bootstrap=0, merge=False)  # every leaf, so the trees differ
    everyone_split = [Rule((Condition("noise_1", "GTE", -100.0),)), Rule((Condition("noise_1", "LT", -100.0),))]
    rules = [r for r in everyone_split if r.mask(data).any()]  # one segment: everyone
    kept = policy_tree_from_rules(post, rules)
    assert kept.segments[0].share == 1.0 and np.isnan(kept.segments[0].stability)
    gain = new.welfare_draws() - kept.welfare_draws()
    p = float(np.mean(gain > 0))
    assert 0.0 < p < 1.0  # a few hundred visitors per segment: evidence, not certainty
    assert steps.choose_tree(new, kept, threshold=p) == (new, p)
    assert steps.choose_tree(new, kept, threshold=p + 1e-9) == (kept, p)
    assert steps.choose_tree(new, None, 0.95) == (new, None)  # nothing to compare with
    assert steps.choose_tree(new, new, 0.95) == (new, None)  # the fit found the same rules
    assert new.welfare == pytest.approx(new.welfare_draws().mean())
    # the same policy under other rules: equal welfare on every draw, so no evidence for the change
    halves = [Rule((Condition("noise_1", "LT", 0.0),)), Rule((Condition("noise_1", "GTE", 0.0),))]
    same = policy_tree_from_rules(post, halves)
    assert {seg.best_arm for seg in same.segments} == {kept.segments[0].best_arm}
    assert steps.choose_tree(same, kept, steps.PROVISIONAL_PROBABILITY) == (kept, 0.0)


def test_loop_keeps_segments_and_reports_churn():
    scenario = make_scenario("multi_winner", 4)
    fit_options = {"progress": False, "draws": 200}
    results = {}
    for threshold in (0.0, 1.0):
        exp = SequentialExperiment(scenario.arms, outcome="continuous", engine="stratified", fit_options=fit_options,
                                   tree_options={"n_bootstrap": 0}, seed=1, resegment_probability=threshold)
        rng = np.random.default_rng(5)
        results[threshold] = [exp.advance(draw_round(exp.plan_, scenario, 600, rng, r)[0]) for r in range(5)]
    for rounds in results.values():
        assert rounds[0].churn is None and rounds[0].resegment_probability is None
        assert all(0.0 <= r.churn <= 1.0 for r in rounds[1:])
    always, never = results[0.0], results[1.0]
    assert [s.rule for s in always[1].segments] != [s.rule for s in always[0].segments]
    # threshold 1: a new tree needs P(higher welfare) = 1, else the previous round's established segments stay
    for before, r in zip(never, never[1:]):
        p = r.resegment_probability
        assert r.segments_established == (r.round >= 2)  # the first two rounds' trees are provisional
        if p is not None and p < 1.0 and before.segments_established:
            assert [s.rule for s in r.segments] == [s.rule for s in before.segments]
    # both happen here: a settling tree kept when the new one is less likely better than not, and established
    # segments replaced by a tree better on every draw
    def rules(r):
        return [s.rule for s in r.segments]

    settling_kept = [r for before, r in zip(never, never[1:]) if not before.segments_established
                     and r.resegment_probability is not None and r.resegment_probability < steps.PROVISIONAL_PROBABILITY
                     and rules(r) == rules(before)]
    replaced = [r for before, r in zip(never, never[1:]) if before.segments_established
                and r.resegment_probability == 1.0 and rules(r) != rules(before)]
    assert settling_kept and replaced


def _multi_winner_loop(**settings):
    """(scenario, experiment, rng): a small, fast multi_winner loop on the stratified engine."""
    scenario = make_scenario("multi_winner", 4)
    exp = SequentialExperiment(scenario.arms, outcome="continuous", engine="stratified",
                               fit_options={"progress": False, "draws": 200}, tree_options={"n_bootstrap": 0},
                               seed=1, **settings)
    return scenario, exp, np.random.default_rng(5)


def test_a_minimum_gain_beyond_reach_keeps_the_first_tree():
    scenario, exp, rng = _multi_winner_loop(resegment_probability=0.5, resegment_min_gain=1e6)
    rounds = [exp.advance(draw_round(exp.plan_, scenario, 600, rng, r)[0]) for r in range(3)]
    assert [r.resegment_probability for r in rounds[1:]] == [0.0, 0.0]
    assert [r.segments_established for r in rounds] == [False, False, True]
    rules = [[s.rule for s in r.segments] for r in rounds]
    # while segments settle a new tree needs P >= 0.5; P is 0 here, so even the provisional first tree stays
    assert rules[1] == rules[0] and rules[2] == rules[0]


def _served_by_client(plan, data, key):
    """Each visitor's arm as the Client serves the plan's exported flag (the truth served_arms must match)."""
    from sortition.experiment import plan_to_configuration
    from sortition.experiment.simulation import visitor_attributes
    from sortition.serving import Client, Configuration

    client = Client(Configuration.from_json(plan_to_configuration(plan, key)))
    attrs = visitor_attributes(data.covariates)
    return np.array([client.get_assignment(key, str(s), a, "none") for s, a in zip(data.subject, attrs)], dtype=object)


def test_churn_reads_the_arm_each_visitors_shard_is_served():
    from sortition.experiment.export import experiment_salt

    data, _ = generate("storefront", 400, arms=3, seed=1)
    arms, key = data.arms, "churn-test"
    salt = experiment_salt(key)
    mobile = data.covariates["device"].eq("mobile").to_numpy()
    win = {arms[0]: 0.1, arms[1]: 0.8, arms[2]: 0.1}
    lead1 = {arms[0]: 0.1, arms[1]: 0.46, arms[2]: 0.44}
    lead2 = {arms[0]: 0.1, arms[1]: 0.44, arms[2]: 0.46}  # the lead flips, 2% of the optimized cell moves
    a = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: win, 1: lead1})
    b = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: win, 1: lead2})
    for plan in (a, b):
        assert (steps.served_arms(plan, data, salt) == _served_by_client(plan, data, key)).all()
    changed = steps.served_arms(a, data, salt) != steps.served_arms(b, data, salt)
    assert not changed[mobile].any() and 0 < changed.sum()
    # the shards between the old and new boundary: 0.9 x 2% of the non-mobile visitors, give or take sampling
    assert changed[~mobile].mean() == pytest.approx(0.018, abs=0.015)
    assert steps.churn(a, b, data, salt) == pytest.approx(changed.mean())
    assert steps.churn(a, b, data) == pytest.approx(1 - mobile.mean())  # the proxy counts the whole segment
    assert steps.churn(a, a, data, salt) == 0.0


def _flip_setup(seed=3):
    data, _ = generate("storefront", 900, arms=3, outcome="continuous", seed=seed)
    post = fit(data, outcome="continuous", engine="stratified", draws=300, seed=0)
    tree = policy_tree_from_rules(post, [MOBILE, NOT_MOBILE])
    return data, post, tree


def test_a_kept_segments_lead_arm_flips_only_with_the_stated_probability():
    data, post, tree = _flip_setup()
    arms, summary = data.arms, tree.summary
    seg = tree.segments[1]  # not mobile
    new = {s.id: dict(zip(arms, summary.win[i])) for i, s in enumerate(tree.segments)}
    challenger = max(new[seg.id], key=new[seg.id].get)
    incumbent = next(a for a in arms if a != challenger)
    before = {a: (0.6 if a == incumbent else 0.2) for a in arms}
    previous = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: new[tree.segments[0].id], 1: before})
    means = np.column_stack([np.zeros(post.n_draws), summary.segment_means(seg.id)])
    p = float(np.mean(means[:, arms.index(challenger)] > means[:, arms.index(incumbent)]))
    assert 0.0 < p <= 1.0
    held, ids = steps.hold_arm_flips(previous, data, tree.segments, summary, new, arms, p + 1e-9)
    assert ids == (seg.id,) and held[seg.id] == pytest.approx(previous.segment(1).optimized)
    assert held[tree.segments[0].id] == new[tree.segments[0].id]  # its lead did not change: Thompson's weights
    allowed, ids = steps.hold_arm_flips(previous, data, tree.segments, summary, new, arms, p)
    assert ids == () and allowed == new
    assert steps.hold_arm_flips(previous, data, tree.segments, summary, new, arms, 0.0) == (new, ())
    # no incumbent: a tied lead (the uniform first plan), or a segment that is not last round's group
    tied = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: new[tree.segments[0].id],
                                                            1: {a: 1 / 3 for a in arms}})
    assert steps.hold_arm_flips(tied, data, tree.segments, summary, new, arms, 1.0)[1] == ()
    desktop = Rule((Condition("device", "ONE_OF", ["desktop"]),))
    other = make_plan(arms, [(0, desktop)], {0: before})
    assert steps.hold_arm_flips(other, data, tree.segments, summary, new, arms, 1.0)[1] == ()


def test_churn_above_max_rows_is_estimated_on_a_sample():
    from sortition.experiment.export import experiment_salt

    data, _ = generate("storefront", 3000, arms=3, seed=4)
    arms, salt = data.arms, experiment_salt("sample-test")
    a = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: {arms[0]: 0.2, arms[1]: 0.6, arms[2]: 0.2},
                                                         1: {arms[0]: 0.6, arms[1]: 0.2, arms[2]: 0.2}})
    b = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: {arms[0]: 0.2, arms[1]: 0.2, arms[2]: 0.6},
                                                         1: {arms[0]: 0.2, arms[1]: 0.2, arms[2]: 0.6}})
    full = steps.churn(a, b, data, salt, max_rows=None)
    assert 0.2 < full < 0.8
    sampled = [steps.churn(a, b, data, salt, max_rows=1000, seed=s) for s in range(3)]
    assert len(set(sampled)) > 1  # other samples, other estimates ...
    assert all(abs(x - full) < 0.06 for x in sampled)  # ... within sampling error (sd ~0.013) of every visitor's
    assert steps.churn(a, b, data, salt, max_rows=3000) == full


def test_each_segment_carries_the_layout_of_the_segment_its_visitors_came_from():
    from dataclasses import replace

    from sortition.experiment.export import experiment_salt

    data, _ = generate("storefront", 600, arms=3, seed=2)
    arms, key = data.arms, "carry-test"
    salt = experiment_salt(key)
    mobile = data.covariates["device"].eq("mobile").to_numpy()
    a = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: {arms[0]: 0.6, arms[1]: 0.2, arms[2]: 0.2},
                                                         1: {arms[0]: 0.2, arms[1]: 0.2, arms[2]: 0.6}})
    a = steps.carry_layouts(make_plan(arms, [(0, None)], {0: {x: 1 / 3 for x in arms}}), a, data)
    # segment 0 splits by `returning`; both parts start from the mobile segment's shards, and the
    # non-mobile segment (now listed first) from its own, as does the catch-all from the catch-all
    returning = Rule((Condition("returning", "ONE_OF", ["true"]),))
    w = {arms[0]: 0.2, arms[1]: 0.6, arms[2]: 0.2}
    b = make_plan(arms, [(5, NOT_MOBILE), (6, Rule((*MOBILE.conditions, *returning.conditions))), (7, MOBILE)],
                  {5: {arms[0]: 0.2, arms[1]: 0.2, arms[2]: 0.6}, 6: w, 7: w})
    carried = steps.carry_layouts(a, b, data)
    assert carried.segment(5).shards == a.segment(1).shards  # same weights, same visitors: nothing moves
    assert carried.segment(6).shards == carried.segment(7).shards
    assert carried.segment(6).shards != b.segment(6).shards and b.segment(6).shards is None
    for plan in (a, carried):
        assert (steps.served_arms(plan, data, salt) == _served_by_client(plan, data, key)).all()
    changed = steps.served_arms(a, data, salt) != steps.served_arms(carried, data, salt)
    assert not changed[~mobile].any()
    # mobile: 0.4 of the optimized cell leaves control for arm 1 -> ~0.9 x 0.4 of them change arm
    assert changed[mobile].mean() == pytest.approx(0.36, abs=0.07)
    contiguous = steps.served_arms(a, data, salt) != steps.served_arms(replace(carried, segments=b.segments), data,
                                                                        salt)
    assert changed.sum() < contiguous.sum()


def test_loop_plans_are_laid_out_from_the_last_round():
    scenario = make_scenario("multi_winner", 4)
    exp = SequentialExperiment(scenario.arms, key="carry-loop", outcome="continuous", engine="stratified",
                               fit_options={"progress": False, "draws": 200}, tree_options={"n_bootstrap": 0},
                               seed=1)
    rng = np.random.default_rng(5)
    for r in range(3):
        exp.advance(draw_round(exp.plan_, scenario, 600, rng, r)[0])
    assert exp.plans_[0].segments[0].shards is None  # the first plan: contiguous
    for before, plan in zip(exp.plans_[1:], exp.plans_[2:]):
        assert all(seg.shards is not None for seg in (*plan.segments, plan.default))
        assert plan == steps.carry_layouts(before, _contiguous(plan), steps.experiment_data(
            exp.data_[exp.data_["round"] < plan.round], exp.arms, exp.covariates))


def _contiguous(plan):
    """``plan`` with the contiguous layout (its weights only)."""
    from dataclasses import replace

    return replace(plan, segments=tuple(replace(s, shards=None) for s in plan.segments),
                   default=replace(plan.default, shards=None))


def test_limit_churn_moves_weights_only_as_far_as_the_cap_allows():
    from sortition.experiment.export import experiment_salt

    data, _ = generate("storefront", 2000, arms=3, seed=6)
    arms, salt = data.arms, experiment_salt("cap-test")
    before = {arms[0]: 0.6, arms[1]: 0.2, arms[2]: 0.2}
    after = {arms[0]: 0.1, arms[1]: 0.1, arms[2]: 0.8}
    first = make_plan(arms, [(0, None)], {0: {x: 1 / 3 for x in arms}})
    a = steps.carry_layouts(first, make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: before, 1: before}), data)
    b = make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: before, 1: after})
    uncapped = steps.churn(a, steps.carry_layouts(a, b, data), data, salt)
    non_mobile = 1 - data.covariates["device"].eq("mobile").mean()
    assert uncapped == pytest.approx(0.9 * 0.6 * non_mobile, abs=0.04)  # total variation 0.6, optimized cell 0.9

    same, step = steps.limit_churn(a, b, data, salt, 1.0)
    assert step == 1.0 and same == steps.carry_layouts(a, b, data)
    capped, step = steps.limit_churn(a, b, data, salt, 0.1)
    assert 0 < step < 1
    assert steps.churn(a, capped, data, salt) <= 0.1
    assert steps.churn(a, capped, data, salt) > 0.1 - 0.05  # no further below the cap than one bisection step
    assert capped.segment(0) == a.segment(0)  # the mobile segment's weights did not move
    moved = capped.segment(1).optimized
    for arm in arms:  # part of the way, along the straight line from the old weights to the new
        expected = (1 - step) * a.segment(1).optimized[arm] + step * b.segment(1).optimized[arm]
        assert moved[arm] == pytest.approx(expected, abs=1e-6)
    assert b.segment(1).optimized[arms[2]] > moved[arms[2]] > a.segment(1).optimized[arms[2]]


def test_limit_churn_gives_a_new_group_its_own_weights_and_holds_the_kept_groups():
    from sortition.experiment.export import experiment_salt

    data, _ = generate("storefront", 1500, arms=3, seed=7)
    arms, salt = data.arms, experiment_salt("cap-split")
    w = {arms[0]: 0.2, arms[1]: 0.6, arms[2]: 0.2}
    first = make_plan(arms, [(0, None)], {0: {x: 1 / 3 for x in arms}})
    a = steps.carry_layouts(first, make_plan(arms, [(0, MOBILE), (1, NOT_MOBILE)], {0: w, 1: w}), data)
    returning = Rule((Condition("returning", "ONE_OF", ["true"]),))
    new_weights = {arms[0]: 0.1, arms[1]: 0.1, arms[2]: 0.8}
    b = make_plan(arms, [(0, returning), (1, MOBILE), (2, NOT_MOBILE)],
                  {0: new_weights, 1: {arms[0]: 0.8, arms[1]: 0.1, arms[2]: 0.1}, 2: w})
    moved = steps._moved(a, b, data)
    returning_visitors = data.covariates["returning"].astype(str).eq("True").to_numpy()
    assert np.array_equal(moved, returning_visitors)  # the returning visitors left both old segments
    assert steps.churn(a, steps.carry_layouts(a, b, data), data, salt) > moved.mean() + 0.1
    capped, step = steps.limit_churn(a, b, data, salt, 0.01)
    # the new group gets this round's weights; the mobile segment, still last round's group less the
    # returning visitors, holds its weights: the round moves only the visitors whose segment changed
    assert capped.segment(0).optimized == pytest.approx(new_weights)
    assert step == 0.0 and capped.segment(1).optimized == pytest.approx(w)
    assert steps.churn(a, capped, data, salt) == pytest.approx(moved.mean())
    # with room under the cap, the kept groups move part of the way
    roomy, step = steps.limit_churn(a, b, data, salt, moved.mean() + 0.05)
    assert 0 < step < 1 and moved.mean() < steps.churn(a, roomy, data, salt) <= moved.mean() + 0.05


def test_loop_churn_stays_under_the_cap_once_segments_are_established():
    scenario = make_scenario("multi_winner", 4)
    options = dict(outcome="continuous", engine="stratified", fit_options={"progress": False, "draws": 200},
                   tree_options={"n_bootstrap": 0}, seed=1, key="cap-loop")
    from sortition.report.html import render

    runs, exps, first_capped_report = {}, {}, {}
    for cap in (1.0, 0.03):
        exps[cap] = exp = SequentialExperiment(scenario.arms, max_churn=cap, **options)
        rng = np.random.default_rng(5)
        runs[cap] = []
        for r in range(5):
            runs[cap].append(exp.advance(draw_round(exp.plan_, scenario, 600, rng, r)[0]))
            if runs[cap][-1].allocation_step < 1.0 and cap not in first_capped_report:
                first_capped_report[cap] = render(exp)  # the report describes the latest round
    free, capped = runs[1.0], runs[0.03]
    assert all(r.allocation_step == 1.0 for r in free)
    assert max(r.churn for r in free[2:]) > 0.03  # without the cap, weights move more than 3% of visitors
    for before, r in zip(capped, capped[1:]):
        if r.segments_established and [s.rule for s in r.segments] == [s.rule for s in before.segments]:
            assert r.churn <= 0.03 + 1e-12
        elif r.segments_established and r.segment_change == "one segment":  # only the change's movers
            exp, rows = exps[0.03], exps[0.03].data_
            data = steps.experiment_data(rows[rows["round"] <= r.round], exp.arms, None)
            assert r.churn <= max(0.03, steps._moved(exp.plans_[r.round], r.plan, data).mean()) + 1e-12
        else:  # the provisional tree replaced, or a new tree taken whole: this round's weights
            assert r.allocation_step == 1.0
    assert sum(r.allocation_step < 1.0 for r in capped) >= 1
    assert [r.allocation_step for r in capped[:2]] == [1.0, 1.0]  # the first two plans move freely
    # the round output and the report say the cap held the weights back, and by how much
    from sortition.cli.demo import _churn_text

    last = next(r for r in capped if r.allocation_step < 1.0)
    assert 0 < last.allocation_step < 1
    text = _churn_text(exps[0.03], last)
    assert text.startswith(f"Churn since last round: {last.churn:.1%} of visitors") and "capped at max_churn 3%" in text
    assert f"{last.allocation_step:.0%} of the way" in text
    assert "capped at max_churn 3%" in first_capped_report[0.03]
    assert "capped" not in _churn_text(exps[1.0], free[-1]) and "capped" not in render(exps[1.0])


def _device(*levels):
    return Rule((Condition("device", "ONE_OF", list(levels)),))


def _served(tree, arms):
    """``tree`` with each segment's best arm set by hand (``arms`` in segment order)."""
    from dataclasses import replace

    segments = tuple(replace(s, best_arm=a) for s, a in zip(tree.segments, arms, strict=True))
    return replace(tree, segments=segments)


def test_one_segment_changes_move_only_the_visitors_whose_arm_changes():
    data, _ = generate("storefront", 900, arms=3, outcome="continuous", seed=4)
    assert set(data.covariates["device"]) == {"mobile", "desktop", "tablet"}
    post = fit(data, outcome="continuous", engine="stratified", draws=100, seed=0)
    a0, a1, a2 = post.arms
    kept = _served(policy_tree_from_rules(post, [MOBILE, NOT_MOBILE]), [a1, a2])
    new = policy_tree_from_rules(post, [_device("desktop"), _device("tablet"), _device("mobile")])
    share = {level: float(data.covariates["device"].eq(level).mean()) for level in ("desktop", "tablet")}
    stay, leave = sorted(share, key=share.get, reverse=True)
    arm_of = {stay: a2, leave: a1}
    # the non-mobile visitors the new tree serves a1 join the mobile segment, which serves a1 (a merge)
    changes = steps.one_segment_changes(_served(new, [arm_of["desktop"], arm_of["tablet"], a1]), kept, 0.0)
    assert changes == [[_device("mobile", leave), _device(stay)]]
    # served an arm no kept segment serves, they become a segment of their own (a re-split) ...
    arm_of[leave] = a0
    resplit = _served(new, [arm_of["desktop"], arm_of["tablet"], a1])
    assert steps.one_segment_changes(resplit, kept, 0.0) == [[MOBILE, _device(stay), _device(leave)]]
    # ... when they are at least the minimum share; fewer stay where they are: no change
    assert steps.one_segment_changes(resplit, kept, share[leave] + 0.01) == []
    # the served candidate is scored on the posterior; a change backed only by the whole tree carries its P
    def score(rules):
        return policy_tree_from_rules(post, rules)

    def rules_and_p(chosen):
        return None if chosen is None else ([s.rule for s in chosen[0].segments], chosen[1])

    resplit_rules = [MOBILE, _device(stay), _device(leave)]
    p, same = steps._p_better(score(resplit_rules), kept, 0.0)
    assert not same and 0 < p < 1
    assert rules_and_p(steps.change_one_segment(resplit, kept, score, threshold=p)) == (resplit_rules, p)
    assert steps.change_one_segment(resplit, kept, score, threshold=p + 1e-9) is None
    backed = steps.change_one_segment(resplit, kept, score, threshold=p + 1e-9, backed=p + 1e-9)
    assert rules_and_p(backed) == (resplit_rules, p + 1e-9)
    assert steps.change_one_segment(resplit, kept, score, threshold=p + 1e-9, backed=p) is None


def _rounds_with_movers(**settings):
    """(experiment, iterator): six rounds of :func:`_multi_winner_loop` with ``settings``, yielding per round
    (round, its result, last round's plan, the visitors so far, whose segment changed (n,) bool)."""
    scenario, exp, rng = _multi_winner_loop(**settings)

    def rounds():
        for r in range(6):
            before = exp.plan_
            result = exp.advance(draw_round(before, scenario, 600, rng, r)[0])
            data = steps.experiment_data(exp.data_, exp.arms, None)
            yield r, result, before, data, steps._moved(before, result.plan, data)
    return exp, rounds()


def test_established_segments_change_one_segment_per_round():
    exp, rounds = _rounds_with_movers(resegment_probability=0.2, max_churn=1.0)
    changed = 0
    for r, result, before, data, moved in rounds:
        if r == 0 or not exp.results_[r - 1].segments_established:  # this round's segments still settled
            continue
        if moved.any():  # a change: the visitors who changed segment all come from one of last round's
            changed += 1
            assert len(set(before.segment_index(data)[moved])) == 1
            # the round output and the report say so, with the evidence and the P it needed
            assert result.segment_change == "one segment"
            assert segment_change_text(exp, result) == (
                f"Segments: one segment changed (P(better) = {result.resegment_probability:.2f}; 0.20 needed).")
        else:
            assert result.segment_change in ("kept", "same groups")
    assert changed >= 1
    changes = [r.segment_change for r in exp.results_]
    assert changes[0] == "first" and segment_change_text(exp, exp.results_[0]) == ""
    assert set(changes[1:3]) <= {"kept", "same groups", "new tree"}  # settling rounds take trees whole
    settling = next(r for r in exp.results_[1:3] if r.segment_change in ("kept", "new tree"))
    assert segment_change_text(exp, settling).endswith("0.20 needed while segments settle).")
    from sortition.report.html import render

    last = segment_change_text(exp, exp.results_[-1])
    assert last and last.removeprefix("Segments: ").rstrip(".") in render(exp)  # the report's key figures


def test_a_round_that_changes_one_segment_moves_only_the_visitors_it_must():
    # under a 3% cap the other segments hold their weights: the round moves the changed segment's movers
    # (more than 3% here), and nobody else; without the hold, their Thompson weights moved more visitors
    exp, rounds = _rounds_with_movers(resegment_probability=0.2, max_churn=0.03)
    checked = 0
    for _, result, _, _, moved in rounds:
        if result.segment_change != "one segment":
            continue
        assert moved.mean() > 0.03 and result.churn == pytest.approx(moved.mean(), abs=1e-12)
        assert result.allocation_step == 0.0
        assert churn_cap_note(exp, result) == (
            " (capped at max_churn 3%: the other segments' weights moved 0% of the way to this round's "
            "Thompson weights)")
        checked += 1
    assert checked >= 2
