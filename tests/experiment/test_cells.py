import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.experiment import CELLS, CellWeights, make_plan, uniform_plan
from sortition.experiment.schedules import as_schedule, explicit, fixed, geometric

ARMS = ("control", "a", "b", "c")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    control=st.floats(0, 0.5),
    explore=st.floats(0, 0.5),
    raw=st.lists(st.floats(0, 1), min_size=4, max_size=4),
    active_mask=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_floors_always_respected(control, explore, raw, active_mask):
    weights = CellWeights(control, explore)
    active = ("control", *[a for a, keep in zip(ARMS[1:], active_mask) if keep])
    allocation = {0: dict(zip(ARMS, raw))}
    plan = make_plan(ARMS, [(0, None)], allocation, weights=weights, active_arms=active)
    for seg in (*plan.segments, plan.default):
        probs = seg.arm_probabilities
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert probs["control"] >= control + explore / len(active) - 1e-12
        for arm in ARMS:
            if arm in active:
                assert probs[arm] >= explore / len(active) - 1e-12
            else:
                assert probs[arm] == 0.0
        # each cell carries exactly its share
        assert sum(seg.cells["control"].values()) == pytest.approx(control)
        assert sum(seg.cells["explore"].values()) == pytest.approx(explore)
        assert sum(seg.cells["optimized"].values()) == pytest.approx(1 - control - explore)
        assert set(seg.cells) == set(CELLS)


def test_mixture_values():
    plan = make_plan(("c", "t"), [(1, None)], {1: {"c": 0.2, "t": 0.8}}, weights=CellWeights(0.1, 0.2))
    probs = plan.segment(1).arm_probabilities
    assert probs["c"] == pytest.approx(0.1 + 0.1 + 0.7 * 0.2)
    assert probs["t"] == pytest.approx(0.1 + 0.7 * 0.8)


def test_uniform_first_plan_and_default():
    plan = uniform_plan(ARMS)
    assert plan.round == 0 and len(plan.segments) == 1
    probs = plan.default.arm_probabilities
    assert probs["a"] == probs["b"] == probs["c"] < probs["control"]


@pytest.mark.parametrize("control,explore", [(-0.1, 0.05), (0.6, 0.5), (float("nan"), 0.1), (0.05, 1.5)])
def test_bad_weights(control, explore):
    with pytest.raises((ValueError, TypeError), match="min_"):
        CellWeights(control, explore)


def test_bad_plans():
    with pytest.raises(ValueError, match="unknown arms"):
        make_plan(("c", "t"), [(0, None)], {0: {"c": 0.5, "x": 0.5}})
    with pytest.raises(ValueError, match="no weights for segments"):
        make_plan(("c", "t"), [(0, None), (1, None)], {0: {"c": 0.5, "t": 0.5}})
    with pytest.raises(ValueError, match="control"):
        make_plan(("c", "t"), [(0, None)], {0: {"c": 0.5, "t": 0.5}}, active_arms=("t",))


def test_all_zero_optimized_falls_back_to_uniform():
    plan = make_plan(("c", "t"), [(0, None)], {0: {"c": 0.0, "t": 0.0}}, weights=CellWeights(0, 0))
    assert plan.segment(0).arm_probabilities == {"c": 0.5, "t": 0.5}


def test_schedules():
    assert fixed(3, 100).sizes == (100, 100, 100)
    assert geometric(4, 100, 2.0).sizes == (100, 200, 400, 800)
    assert explicit([5, 7]).total == 12
    assert as_schedule(50, n_rounds=2).sizes == (50, 50)
    with pytest.raises(ValueError, match="positive"):
        fixed(0, 10)
    with pytest.raises(ValueError, match="round 1 size"):
        explicit([3, 0])
    with pytest.raises(IndexError):
        fixed(2, 10).size(2)
    with pytest.raises(TypeError):
        as_schedule("ten")
    assert np.array(list(fixed(2, 3))).sum() == 6


def test_segment_index_first_match_then_catch_all():
    import pandas as pd

    from sortition.rules import Condition, Rule

    frame = pd.DataFrame({"device": ["mobile", "desktop", "tablet", None], "recency": [1.0, 2.0, 30.0, None]})
    segments = [
        (0, Rule((Condition("recency", "LT", 5.0),))),
        (1, Rule((Condition("device", "ONE_OF", ["mobile", "desktop"]),))),
        (2, Rule((Condition("device", "ONE_OF", ["tablet"]),))),
    ]
    weights = {0: {"control": 1.0}, 1: {"a": 1.0}, 2: {"b": 1.0}}
    plan = make_plan(ARMS, segments, weights, weights=CellWeights(0, 0))
    # row 1 matches segments 0 and 1: the first (flag order) serves; row 3 matches nothing
    assert plan.segment_index(frame).tolist() == [0, 0, 2, 3]
    probs = plan.probabilities(frame)
    assert probs[0].tolist() == [1.0, 0.0, 0.0, 0.0] and probs[2].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert probs[3].tolist() == pytest.approx([0.25] * 4)  # catch-all: uniform default
