"""thompson_allocation on a real Posterior: the reference's semantics and its bad inputs."""

import numpy as np
import pandas as pd
import pytest

from sortition.policy import Segment, thompson_allocation
from sortition.policy.arms import iterative_floor_clip
from sortition.posterior import Posterior
from sortition.rules import Condition, Rule

from .conftest import make_posterior


def _expected(draws, mask, k, epsilon):
    means = draws[mask].astype(np.float64).mean(axis=0)
    winners = np.where(means.max(axis=1) > 0, means.argmax(axis=1) + 1, 0)
    raw = np.bincount(winners, minlength=k) / means.shape[0]
    return iterative_floor_clip(raw, epsilon)


def test_weights_are_floor_clipped_win_frequencies(two_segment_posterior):
    post, draws = two_segment_posterior
    frame = post.data.covariates
    segments = [
        Segment(10, Rule([Condition("x", "GT", 5)])),
        Segment(11, Rule([Condition("x", "LTE", 5), Condition("device", "ONE_OF", ["mobile"])])),
        Segment(12, Rule()),
    ]
    for epsilon in (0.0, 0.02, 0.5, 1.0):
        alloc = thompson_allocation(post, segments, epsilon=epsilon)
        assert list(alloc) == [10, 11, 12]
        for seg in segments:
            weights = alloc[seg.id]
            assert list(weights) == ["control", "t1", "t2"]
            assert sum(weights.values()) == pytest.approx(1.0)
            expected = _expected(draws, seg.rule.mask(frame), 3, epsilon)
            assert list(weights.values()) == pytest.approx(expected.tolist(), abs=1e-12)
    uniform = thompson_allocation(post, segments, epsilon=1.0)
    assert all(w == pytest.approx(1 / 3) for ws in uniform.values() for w in ws.values())


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_any_number_of_arms(k):
    rng = np.random.default_rng(k)
    n = 120
    x = pd.DataFrame({"x": rng.normal(size=n)})
    draws = rng.normal(0.05 * np.arange(k - 1), 0.5, size=(n, 40, k - 1))
    post = make_posterior(draws, x)
    seg = Segment(0, Rule([Condition("x", "GT", 0)]))
    weights = thompson_allocation(post, [seg], epsilon=0.1)[0]
    assert len(weights) == k and sum(weights.values()) == pytest.approx(1.0)
    assert list(weights.values()) == pytest.approx(_expected(draws, x["x"].to_numpy() > 0, k, 0.1).tolist())
    assert min(weights.values()) >= 0.1 / k - 1e-12


def test_all_negative_draws_send_everything_to_control_but_the_floor():
    n = 50
    x = pd.DataFrame({"x": np.arange(n, dtype=float)})
    post = make_posterior(-np.ones((n, 30, 2)), x)
    weights = thompson_allocation(post, [Segment(0, Rule())], epsilon=0.03)[0]
    assert weights == pytest.approx({"control": 0.98, "t1": 0.01, "t2": 0.01})
    raw = thompson_allocation(post, [Segment(0, Rule())], epsilon=0.0)[0]
    assert raw == {"control": 1.0, "t1": 0.0, "t2": 0.0}


def test_bad_inputs(two_segment_posterior):
    post, draws = two_segment_posterior
    seg = [Segment(0, Rule())]
    with pytest.raises(TypeError, match="Posterior"):
        thompson_allocation(draws, seg)
    with pytest.raises(TypeError, match="Posterior"):
        thompson_allocation({"draws": draws}, seg)
    with pytest.raises(ValueError, match="no observed data"):
        thompson_allocation(Posterior.from_draws(draws), seg)
    for eps in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="epsilon"):
            thompson_allocation(post, seg, epsilon=eps)
    with pytest.raises(ValueError, match="matches no visitor"):
        thompson_allocation(post, [Segment(3, Rule([Condition("x", "GT", 100)]))])
    with pytest.raises(ValueError, match="unique"):
        thompson_allocation(post, [Segment(0, Rule()), Segment(0, Rule())])
    with pytest.raises(TypeError, match=r"segments\[0\]"):
        thompson_allocation(post, [Rule()])
    with pytest.raises(ValueError, match="column 'nope'"):
        thompson_allocation(post, [Segment(0, Rule([Condition("nope", "GT", 1)]))])
