"""A calibration's P(best arm) reliability curve applied to Thompson allocation (and only with one)."""

from dataclasses import replace

import numpy as np
import pytest

from sortition.policy import Segment, thompson_allocation
from sortition.policy.allocation import allocation_weights
from sortition.policy.arms import iterative_floor_clip
from sortition.posterior.calibration import LEVELS, Calibration
from sortition.rules import Condition, Rule


def _calibration(p_best) -> Calibration:
    curve = tuple(LEVELS)
    return Calibration(LEVELS, {"visitor": curve, "segment": curve, "average": curve}, p_best, 5)


# raw win frequencies of 0.9 and below 0.1 are truly best 60% and 30% of the time: overconfident
SHRINK = _calibration(((0.1, 0.9), (0.3, 0.6)))
SEGMENTS = [Segment("high", Rule([Condition("x", "GT", 5)])), Segment("low", Rule([Condition("x", "LTE", 5)]))]


def test_a_known_curve_maps_and_renormalizes_the_win_frequencies():
    # interp: 0.9 -> 0.6; 0.1 and 0 -> 0.3 (clipped to the first bin); renormalized to sum 1
    weights = allocation_weights(np.array([0.9, 0.1, 0.0]), 0.0, SHRINK)
    assert weights.tolist() == pytest.approx([0.5, 0.25, 0.25])
    # 0.5 -> 0.3 + 0.3 * 0.4 / 0.8 = 0.45 for both: an even split stays even
    assert allocation_weights(np.array([0.5, 0.5]), 0.0, SHRINK).tolist() == pytest.approx([0.5, 0.5])
    # the exploration floor applies after the curve, as before
    floored = allocation_weights(np.array([1.0, 0.0, 0.0]), 0.9, _calibration(((0.0, 1.0), (0.0, 1.0))))
    assert floored.tolist() == pytest.approx(iterative_floor_clip(np.array([1.0, 0.0, 0.0]), 0.9).tolist())
    # an artifact without a reliability curve leaves the frequencies raw
    assert allocation_weights(np.array([0.9, 0.1]), 0.0, _calibration(((), ()))).tolist() == [0.9, 0.1]


def test_thompson_allocation_applies_the_posteriors_calibration(two_segment_posterior):
    post, _ = two_segment_posterior
    plain = thompson_allocation(post, SEGMENTS, epsilon=0.02)
    again = thompson_allocation(replace(post, calibration=None), SEGMENTS, epsilon=0.02)
    assert plain == again and not plain.calibrated  # no calibration: the same weights, bit for bit
    calibrated = thompson_allocation(replace(post, calibration=SHRINK), SEGMENTS, epsilon=0.02)
    assert calibrated.calibrated
    for seg in ("high", "low"):
        raw = np.array(list(thompson_allocation(post, SEGMENTS, epsilon=0.0)[seg].values()))
        expected = iterative_floor_clip(SHRINK.best_probability(raw) / SHRINK.best_probability(raw).sum(), 0.02)
        got = np.array(list(calibrated[seg].values()))
        assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-12) and got.sum() == pytest.approx(1.0)
        # the overconfident curve pulls the leader's share toward the others
        assert got.max() < np.array(list(plain[seg].values())).max()
