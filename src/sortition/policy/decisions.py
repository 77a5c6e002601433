"""``recommend``: per treatment, overall and per segment, SHIP / STOP / CONTINUE with the numbers behind it.

Lift is the scope-average contrast (treatment minus control) in the metric's units, from the
posterior draws of the scope mean. With ``m`` and ``s`` its posterior mean and sd:

- expected loss of shipping = E[max(0, -lift)]; of not shipping = E[max(0, lift)];
- value of one more round of the same size: with twice the data the posterior sd shrinks to
  ``s / sqrt(2)``, so the mean after the round is ``m' ~ N(m, s^2 / 2)`` (preposterior, normal
  approximation); the value is ``E[max(0, m')] - max(0, m)`` per visitor, >= 0.

Decision (thresholds in :class:`DecisionThresholds`, all overridable):
SHIP when P(lift > 0) >= ship_probability and the expected loss of shipping <= max_loss;
STOP when P(lift > min_effect) < stop_probability (the effect is very unlikely to be worth it);
CONTINUE otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from sortition.policy.allocation import require_posterior, segment_masks
from sortition.policy.summary import SegmentSummary
from sortition.posterior import Posterior


@dataclass(frozen=True)
class DecisionThresholds:
    """ship_probability: P(lift > 0) needed to SHIP (default 0.95); max_loss: largest expected loss
    of shipping tolerated, metric units per visitor (default inf: not binding); stop_probability:
    STOP below this P(lift > min_effect) (default 0.05)."""

    ship_probability: float = 0.95
    max_loss: float = math.inf
    stop_probability: float = 0.05

    def __post_init__(self) -> None:
        for name in ("ship_probability", "stop_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"DecisionThresholds.{name} must be in [0, 1], got {value}")
        if not self.max_loss >= 0:
            raise ValueError(f"DecisionThresholds.max_loss must be >= 0, got {self.max_loss}")


@dataclass(frozen=True)
class Recommendation:
    scope: Any  # "overall" or a segment id
    arm: Any
    share: float
    lift_mean: float
    lift_lower: float
    lift_upper: float
    prob_positive: float
    prob_practical: float
    loss_if_ship: float
    loss_if_not_ship: float
    value_of_next_round: float
    decision: str


def recommend(
    posterior: Posterior,
    segments: Sequence[Any] = (),
    *,
    min_effect: float = 0.0,
    level: float = 0.9,
    thresholds: DecisionThresholds | None = None,
    summary: SegmentSummary | None = None,
) -> pd.DataFrame:
    """One row per (scope, treatment arm): overall first, then each segment (``id`` and ``rule``).

    Args:
        posterior: a Posterior with observed data.
        segments: e.g. ``fit_policy_tree(...).segments``.
        min_effect: minimum practical effect, metric units (>= 0).
        level: credible level of the lift interval.
        thresholds: decision thresholds (default :class:`DecisionThresholds`).
        summary: the round's :class:`~sortition.policy.summary.SegmentSummary` of these segments with an
            ``"everyone"`` extra mask (the loop's), so the draws are not read again; None computes it.

    Returns:
        DataFrame with the fields of :class:`Recommendation`.
    """
    require_posterior(posterior, "recommend")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not min_effect >= 0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect!r}")
    thresholds = thresholds or DecisionThresholds()
    everyone = np.ones(posterior.n, dtype=bool)
    if summary is None or not summary.covers(segments) or "everyone" not in summary.extra:
        masks = segment_masks(posterior, [(seg.id, seg.rule) for seg in segments]) if len(segments) else everyone[:0]
        summary = SegmentSummary.compute(posterior, [seg.id for seg in segments], masks, {"everyone": everyone})
    scopes = [("overall", everyone, summary.extra["everyone"])]
    scopes += [(seg.id, mask, means) for seg, mask, means in zip(segments, summary.masks, summary.means, strict=True)]
    rows = []
    for scope, mask, means in scopes:  # means: (S, K-1)
        for j, arm in enumerate(posterior.arms[1:]):
            rows.append(_row(scope, arm, float(mask.mean()), means[:, j], min_effect, level, thresholds))
    return pd.DataFrame([asdict(r) for r in rows])


def _row(scope, arm, share, lift: np.ndarray, min_effect, level, th: DecisionThresholds) -> Recommendation:
    lower, upper = np.quantile(lift, [(1 - level) / 2, (1 + level) / 2])
    prob_positive = float((lift > 0).mean())
    prob_practical = float((lift > min_effect).mean())
    loss_ship = float(np.maximum(-lift, 0).mean())
    loss_not_ship = float(np.maximum(lift, 0).mean())
    mean, sd = float(lift.mean()), float(lift.std())
    if prob_positive >= th.ship_probability and loss_ship <= th.max_loss:
        decision = "SHIP"
    elif prob_practical < th.stop_probability:
        decision = "STOP"
    else:
        decision = "CONTINUE"
    return Recommendation(
        scope, arm, share, mean, float(lower), float(upper), prob_positive, prob_practical,
        loss_ship, loss_not_ship, _value_of_next_round(mean, sd), decision,
    )


def _value_of_next_round(mean: float, sd: float) -> float:
    tau = sd / math.sqrt(2.0)
    if tau <= 0:
        return 0.0
    z = mean / tau
    expected_best = mean * 0.5 * (1 + math.erf(z / math.sqrt(2))) + tau * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return max(0.0, expected_best - max(0.0, mean))
