import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataclasses import replace

from sortition.experiment import (
    TOTAL_SHARDS,
    CellWeights,
    carry_layout,
    experiment_salt,
    largest_remainder,
    make_plan,
    plan_to_configuration,
    plan_to_flag,
    served_probabilities,
    shard_arms,
    shard_layout,
)
from sortition.serving import Client, Configuration
from sortition.serving.sharding import shard

ARMS = ("control", "a", "b")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.floats(0, 10), min_size=1, max_size=8).filter(lambda w: sum(w) > 1e-6), st.integers(0, 20000))
def test_largest_remainder(weights, total):
    counts = largest_remainder(weights, total)
    assert counts.sum() == total
    exact = np.array(weights) / sum(weights) * total
    assert np.all(np.abs(counts - exact) < 1 + 1e-9)


def test_largest_remainder_bad_input():
    with pytest.raises(ValueError, match="not all zero"):
        largest_remainder([0, 0], 10)
    with pytest.raises(ValueError, match="non-negative"):
        largest_remainder([1, -1], 10)


def _plan(fake_rule, w0, w1, active=ARMS):
    segments = [
        (0, fake_rule([("device", "ONE_OF", ["mobile"])])),
        (1, fake_rule([("device", "NOT_ONE_OF", ["mobile"]), ("recency", "GT", 3.5)])),
    ]
    return make_plan(ARMS, segments, {0: w0, 1: w1}, active_arms=active, round=2)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.floats(0.001, 1), min_size=3, max_size=3), st.floats(0, 0.3), st.floats(0, 0.3))
def test_layout_tiles_and_matches_plan(raw, control, explore):
    plan = make_plan(ARMS, [(0, None)], {0: dict(zip(ARMS, raw))}, weights=CellWeights(control, explore))
    seg = plan.segment(0)
    parts = shard_layout(seg, ARMS)
    assert all(len(p["ranges"]) == 1 for p in parts)  # a first plan: one contiguous range per (arm, cell)
    ranges = [p["ranges"][0] for p in parts]
    assert ranges[0][0] == 0 and ranges[-1][1] == TOTAL_SHARDS
    assert all(a < b for a, b in ranges)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for arm in ARMS:
        served = sum(b - a for p in parts if p["arm"] == arm for a, b in p["ranges"]) / TOTAL_SHARDS
        assert abs(served - seg.arm_probabilities[arm]) <= 1 / TOTAL_SHARDS
        assert all(p["propensity"] == served for p in parts if p["arm"] == arm)
    # arms are contiguous blocks in arm order
    order = [p["arm"] for p in parts]
    assert order == sorted(order, key=ARMS.index)


def test_flag_shape(fake_rule):
    plan = _plan(fake_rule, {"control": 0.1, "a": 0.8, "b": 0.1}, {"control": 0.2, "a": 0.2, "b": 0.6})
    flag = plan_to_flag(plan, "exp")
    assert [a["key"] for a in flag["allocations"]] == ["segment-0", "segment-1", "default"]
    assert flag["allocations"][0]["rules"] == [plan.segments[0].rule.to_json()]
    assert "rules" not in flag["allocations"][-1]
    salts = {sh["salt"] for a in flag["allocations"] for s in a["splits"] for sh in s["shards"]}
    assert salts == {experiment_salt("exp")}
    for alloc in flag["allocations"]:
        for split in alloc["splits"]:
            extra = split["extraLogging"]
            assert set(extra) == {"cell", "segment", "round", "propensity"}
            assert all(isinstance(v, str) for v in extra.values())
            assert extra["round"] == "2"
    served = served_probabilities(flag)
    for seg in plan.segments:
        for arm, p in seg.arm_probabilities.items():
            assert abs(served[f"segment-{seg.id}"][arm] - p) <= 1 / TOTAL_SHARDS
    config = plan_to_configuration(plan, "exp", created_at="2026-01-01T00:00:00.000Z")
    assert json.loads(json.dumps(config))["flags"]["exp"] == flag
    with pytest.raises(ValueError, match="flag_key"):
        plan_to_flag(plan, "")


def _arm_of(flag, allocation_index, subject):
    s = shard(f"{experiment_salt(flag['key'])}-{subject}", TOTAL_SHARDS)
    for split in flag["allocations"][allocation_index]["splits"]:
        if any(r["start"] <= s < r["end"] for r in split["shards"][0]["ranges"]):
            return split["variationKey"]
    raise AssertionError("shard not covered")


def test_most_subjects_keep_their_arm_when_weights_move_a_little(fake_rule):
    before = _plan(fake_rule, {"control": 0.3, "a": 0.4, "b": 0.3}, {"control": 0.3, "a": 0.4, "b": 0.3})
    after = _plan(fake_rule, {"control": 0.28, "a": 0.44, "b": 0.28}, {"control": 0.3, "a": 0.4, "b": 0.3})
    f0, f1 = plan_to_flag(before, "exp"), plan_to_flag(after, "exp")
    subjects = [f"user-{i}" for i in range(4000)]
    moved = np.mean([_arm_of(f0, 0, s) != _arm_of(f1, 0, s) for s in subjects])
    unchanged = np.mean([_arm_of(f0, 1, s) != _arm_of(f1, 1, s) for s in subjects])
    # cumulative shares move by 0.018 and 0.018 -> at most ~3.6% of subjects switch arm
    assert moved < 0.05
    assert unchanged == 0.0


def test_subject_to_arm_frequencies_match_plan(fake_rule):
    plan = _plan(fake_rule, {"control": 0.1, "a": 0.7, "b": 0.2}, {"control": 0.5, "a": 0.1, "b": 0.4})
    flag = plan_to_flag(plan, "exp")
    arms = [_arm_of(flag, 0, f"s{i}") for i in range(20000)]
    freq = {a: arms.count(a) / len(arms) for a in ARMS}
    for arm, p in plan.segment(0).arm_probabilities.items():
        assert abs(freq[arm] - p) < 0.015


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.lists(st.floats(0, 1), min_size=3, max_size=3),
    st.floats(0, 0.3),
    st.floats(0, 0.3),
    st.booleans(),
)
def test_served_floors_within_one_shard(raw, control, explore, drop_b):
    active = ("control", "a") if drop_b else ARMS
    plan = make_plan(ARMS, [(0, None)], {0: dict(zip(ARMS, raw))}, weights=CellWeights(control, explore),
                     active_arms=active)
    served = served_probabilities(plan_to_flag(plan, "exp"))
    for probs in served.values():
        assert sum(probs.values()) == pytest.approx(1.0)
        assert probs["control"] >= control + explore / len(active) - 1 / TOTAL_SHARDS
        for arm in ARMS:
            if arm in active:
                assert probs[arm] >= explore / len(active) - 1 / TOTAL_SHARDS
            else:
                assert probs[arm] == 0.0


def _arm_shard_counts(segment):
    return np.bincount(shard_arms(segment, ARMS), minlength=len(ARMS))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.floats(0.001, 1), min_size=3, max_size=3), min_size=2, max_size=5),
       st.floats(0, 0.3), st.floats(0, 0.3))
def test_carried_layouts_move_the_fewest_shards_and_serve_the_same_shares(rounds, control, explore):
    weights = CellWeights(control, explore)
    plans = [make_plan(ARMS, [(0, None)], {0: dict(zip(ARMS, raw))}, weights=weights).segment(0) for raw in rounds]
    carried = plans[0]
    for new in plans[1:]:
        previous, carried = carried, carry_layout(new, carried, ARMS)
        layout, contiguous = shard_layout(carried, ARMS), shard_layout(new, ARMS)
        # the same (arm, cell) shard counts and propensities as the contiguous layout of the same weights
        width = {(p["arm"], p["cell"]): sum(b - a for a, b in p["ranges"]) for p in layout}
        assert width == {(p["arm"], p["cell"]): sum(b - a for a, b in p["ranges"]) for p in contiguous}
        assert {(p["arm"], p["propensity"]) for p in layout} == {(p["arm"], p["propensity"]) for p in contiguous}
        assert sorted(r for p in layout for r in p["ranges"])[0][0] == 0
        assert (shard_arms(carried, ARMS) >= 0).all()  # every shard served, by one (arm, cell)
        # moved shards: exactly the total-variation distance between the splits, never more than contiguous
        moved = int((shard_arms(previous, ARMS) != shard_arms(carried, ARMS)).sum())
        old, new_counts = _arm_shard_counts(previous), _arm_shard_counts(carried)
        assert moved == int(np.maximum(old - new_counts, 0).sum())
        assert moved <= int((shard_arms(previous, ARMS) != shard_arms(new, ARMS)).sum())


def test_carried_layout_keeps_subjects_that_contiguous_blocks_move():
    # control gives a quarter of the traffic to b: contiguous blocks shift a's block too, moving ~half
    before = make_plan(ARMS, [(0, None)], {0: {"control": 0.5, "a": 0.25, "b": 0.25}}, weights=CellWeights(0, 0))
    after = make_plan(ARMS, [(0, None)], {0: {"control": 0.25, "a": 0.25, "b": 0.5}}, weights=CellWeights(0, 0))
    carried = replace(after, default=carry_layout(after.default, before.default, ARMS),
                      segments=(carry_layout(after.segments[0], before.segments[0], ARMS),))
    subjects = [f"user-{i}" for i in range(4000)]
    f0, f_contiguous, f_carried = (plan_to_flag(p, "exp") for p in (before, after, carried))
    contiguous = np.mean([_arm_of(f0, 0, s) != _arm_of(f_contiguous, 0, s) for s in subjects])
    moved = [(_arm_of(f0, 0, s), _arm_of(f_carried, 0, s)) for s in subjects]
    assert contiguous == pytest.approx(0.5, abs=0.03)
    assert np.mean([a != b for a, b in moved]) == pytest.approx(0.25, abs=0.03)
    assert {(a, b) for a, b in moved if a != b} == {("control", "b")}  # only control's freed shards, all to b
    assert len(f_carried["allocations"][0]["splits"][0]["shards"][0]["ranges"]) == 1
    assert served_probabilities(f_carried) == served_probabilities(f_contiguous)
    served = Client(Configuration.from_json(plan_to_configuration(carried, "exp")))
    assert [served.get_assignment("exp", s, {}, "none") for s in subjects[:500]] == [b for _, b in moved[:500]]


def test_a_layout_that_does_not_fit_its_weights_is_refused():
    before = make_plan(ARMS, [(0, None)], {0: {"control": 0.5, "a": 0.25, "b": 0.25}})
    after = make_plan(ARMS, [(0, None)], {0: {"control": 0.25, "a": 0.25, "b": 0.5}})
    carried = carry_layout(after.segments[0], before.segments[0], ARMS)
    stale = replace(before.segments[0], shards=carried.shards)  # other weights, the old shards
    with pytest.raises(ValueError, match=r"segment 0: its shard layout serves .* call for"):
        shard_layout(stale, ARMS)
    gap = replace(carried, shards=carried.shards[1:])
    with pytest.raises(ValueError, match=r"do not tile \[0, 10000\)"):
        shard_layout(gap, ARMS)


def test_a_layout_naming_a_stray_arm_is_refused():
    plan = make_plan(ARMS, [(0, None)], {0: {"control": 0.5, "a": 0.25, "b": 0.25}})
    carried = carry_layout(plan.segments[0], plan.segments[0], ARMS)
    stray = replace(carried, shards=(replace(carried.shards[0], arm="contrl"), *carried.shards[1:]))
    with pytest.raises(ValueError, match=r"names \['contrl'\], which are not among the arms"):
        shard_layout(stray, ARMS)
