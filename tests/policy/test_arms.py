"""The reference's allocation semantics, case by case."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.policy import arm_win_frequencies, best_arms, iterative_floor_clip


def test_best_arms_ties_negatives_and_zero():
    deltas = np.array(
        [
            [0.3, 0.3, 0.1],  # tie: first
            [-0.1, -0.5, -0.2],  # all negative: control
            [0.0, 0.0, 0.0],  # nothing strictly positive: control
            [0.0, -1.0, 1e-12],  # smallest positive still wins
            [0.1, 0.4, 0.4],
        ]
    )
    assert best_arms(deltas).tolist() == [1, 0, 0, 3, 2]
    assert best_arms(np.array([[0.2], [-0.2]])).tolist() == [1, 0]  # K = 2: delta > 0
    assert best_arms(np.zeros((2, 3, 2))).shape == (2, 3)
    with pytest.raises(ValueError, match="K >= 2"):
        best_arms(np.zeros((4, 0)))


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_win_frequencies_count_winners(k):
    rng = np.random.default_rng(k)
    means = rng.normal(size=(500, k - 1))
    freq = arm_win_frequencies(means, k)
    winners = np.where(means.max(axis=1) > 0, means.argmax(axis=1) + 1, 0)
    assert freq.shape == (k,)
    assert freq.tolist() == [(winners == a).sum() / 500 for a in range(k)]
    assert freq.sum() == pytest.approx(1.0)


def test_win_frequencies_all_negative_draws_go_to_control():
    assert arm_win_frequencies(-np.ones((10, 3)), 4).tolist() == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="n_arms - 1 = 2"):
        arm_win_frequencies(np.zeros((10, 3)), 3)


def test_floor_clip_inert_returns_input_unchanged():
    raw = np.array([0.5, 0.3, 0.2])
    assert iterative_floor_clip(raw, 0.02) is raw
    zero_epsilon = np.array([1.0, 0.0, 0.0])
    assert iterative_floor_clip(zero_epsilon, 0.0) is zero_epsilon


def test_floor_clip_binding_on_several_arms():
    out = iterative_floor_clip(np.array([0.9, 0.08, 0.01, 0.01]), 0.2)  # floor 0.05
    assert out == pytest.approx([0.9 * 0.9 / 0.98, 0.08 * 0.9 / 0.98, 0.05, 0.05])
    # the rescale pushes a third arm under the floor: a second pass fixes it too
    out = iterative_floor_clip(np.array([0.94, 0.055, 0.005, 0.0]), 0.2)
    assert out == pytest.approx([0.85, 0.05, 0.05, 0.05])
    assert out.sum() == pytest.approx(1.0)


def test_floor_clip_epsilon_one_is_uniform_and_bounds_checked():
    assert iterative_floor_clip(np.array([1.0, 0.0, 0.0]), 1.0) == pytest.approx([1 / 3] * 3)
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="epsilon"):
            iterative_floor_clip(np.array([0.5, 0.5]), bad)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    raw=st.lists(st.integers(0, 50), min_size=2, max_size=6).filter(lambda c: sum(c) > 0),
    epsilon=st.floats(0, 1),
)
def test_floor_clip_properties(raw, epsilon):
    raw = np.array(raw, dtype=float) / sum(raw)
    out = iterative_floor_clip(raw, epsilon)
    floor = epsilon / raw.size
    assert out.sum() == pytest.approx(1.0)
    assert (out >= floor - 1e-12).all()
    lifted = out > floor + 1e-12
    if lifted.sum() >= 2:  # arms above the floor keep their ratios
        ratio = out[lifted] / raw[lifted]
        assert ratio == pytest.approx(np.full(ratio.size, ratio[0]))
    if (raw >= floor).all():
        assert out is raw
