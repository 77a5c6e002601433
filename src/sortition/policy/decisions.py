"""``recommend``: one decision per scope (overall, then each segment): SHIP an arm, CONTINUE or STOP.

Lift is the scope-average contrast (treatment minus control) in the metric's units: overall, the draws
of the one-step average effect (``Posterior.average_effects``, what ``lift_summary`` and the loop's
lifts report); per segment, the posterior draws of the segment mean. Each interval is at its kind's
calibrated level (``Posterior.interval_level``: "average" overall, "segment" per segment; the nominal
``level`` without a calibration). With ``m`` and ``s`` its posterior mean and sd:

- expected loss of shipping = E[max(0, -lift)]; of not shipping = E[max(0, lift)];
- value of one more round of the same size: with twice the data the posterior sd shrinks to
  ``s / sqrt(2)``, so the mean after the round is ``m' ~ N(m, s^2 / 2)`` (preposterior, normal
  approximation); the value is ``E[max(0, m')] - max(0, m)`` per visitor, >= 0.

Each scope has one candidate: the segment's ``best_arm`` when the segment carries one, else the arm
that wins most draws (:func:`~sortition.policy.arms.best_arms`); where control is the candidate,
the numbers are those of the best-looking treatment (the one a person would ask about).
Decision (thresholds in :class:`DecisionThresholds`, all overridable):

- SHIP the candidate when it is a treatment, P(lift > 0) >= ship_probability, the expected loss of
  shipping <= max_loss, and (when ``confirmed`` is given: the loop's graduation) the scope and arm
  are confirmed; ``arm`` then names what ships;
- STOP when every treatment has P(lift > min_effect) < stop_probability (keep control: no treatment
  is likely to be worth it);
- CONTINUE otherwise (``reason`` says what is missing).

The sequential loop calls this with its graduation thresholds and ``confirmed`` = the (segment,
arm) pairs confident for ``graduation_rounds`` rounds in a row, so SHIP in the loop *is* a
graduation: the console, the report, ``summary.json`` and this table read the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from sortition.policy.allocation import require_posterior, segment_masks
from sortition.policy.arms import arm_win_frequencies
from sortition.policy.summary import SegmentSummary
from sortition.posterior import Posterior

SHIP, CONTINUE, STOP = "SHIP", "CONTINUE", "STOP"
DECISIONS = (SHIP, CONTINUE, STOP)
OVERALL = "overall"


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
    """One scope's decision and the numbers behind it (lift of ``arm`` vs control, metric units).

    ``arm`` is what SHIP ships; under CONTINUE / STOP it is the treatment the numbers describe.
    ``best_arm`` is the scope's candidate (control when nothing beats it).
    """

    scope: Any  # "overall" or a segment id
    rule: str
    share: float
    decision: str  # SHIP, CONTINUE or STOP
    arm: Any
    best_arm: Any
    p_best: float  # P(best_arm is best) over the scope's draws
    lift_mean: float
    lift_lower: float
    lift_upper: float
    prob_positive: float
    prob_practical: float
    loss_if_ship: float
    loss_if_not_ship: float
    value_of_next_round: float
    reason: str

    @property
    def label(self) -> str:
        """``SHIP arm``, ``CONTINUE`` or ``STOP``: the one word (and arm) shown everywhere."""
        return f"{SHIP} {self.arm}" if self.decision == SHIP else self.decision


def recommend(
    posterior: Posterior,
    segments: Sequence[Any] = (),
    *,
    min_effect: float = 0.0,
    level: float = 0.9,
    thresholds: DecisionThresholds | None = None,
    confirmed: Collection[tuple[Any, Any]] | None = None,
    summary: SegmentSummary | None = None,
) -> pd.DataFrame:
    """One row per scope: overall first, then each segment (objects with ``id`` and ``rule``).

    Args:
        posterior: a Posterior with observed data.
        segments: e.g. ``fit_policy_tree(...).segments``.
        min_effect: minimum practical effect, metric units (>= 0).
        level: credible level of the lift interval.
        thresholds: decision thresholds (default :class:`DecisionThresholds`).
        confirmed: when given, SHIP also needs ``(scope, arm)`` in it (scope "overall" or a segment
            id); a confident but unconfirmed candidate CONTINUEs (the loop's graduation streak).
        summary: the round's :class:`~sortition.policy.summary.SegmentSummary` of these segments (the
            loop's), so the draws are not read again; None computes it.

    Returns:
        DataFrame with the fields of :class:`Recommendation`, one row per scope.
    """
    require_posterior(posterior, "recommend")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not min_effect >= 0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect!r}")
    thresholds = thresholds or DecisionThresholds()
    everyone = np.ones(posterior.n, dtype=bool)
    if summary is None or not summary.covers(segments):
        masks = segment_masks(posterior, [(seg.id, seg.rule) for seg in segments]) if len(segments) else everyone[:0]
        summary = SegmentSummary.compute(posterior, [seg.id for seg in segments], masks)
    # overall: the one-step average effect, as lift_summary and the loop's lifts (the plug-in mean of the
    # draws is overconfident on adaptive data); each interval at its kind's calibrated level
    scopes: list[tuple[Any, str, np.ndarray, np.ndarray, Any, float]] = [
        (OVERALL, "everyone", everyone, posterior.average_effects(), None,
         posterior.interval_level("average", level))
    ]
    segment_level = posterior.interval_level("segment", level)
    scopes += [
        (seg.id, seg.rule.describe() or "everyone", mask, means, getattr(seg, "best_arm", None),
         segment_level)
        for seg, mask, means in zip(segments, summary.masks, summary.means, strict=True)
    ]
    rows = [
        _decide(posterior.arms, scope, rule, float(mask.mean()), np.asarray(means, dtype=np.float64), best,
                min_effect, scope_level, thresholds, confirmed)
        for scope, rule, mask, means, best, scope_level in scopes  # means: (S, K-1)
    ]
    return pd.DataFrame([asdict(r) for r in rows])


def recommendations(table: pd.DataFrame | None) -> tuple[Recommendation, ...]:
    """:func:`recommend`'s DataFrame back as :class:`Recommendation` objects (empty for None)."""
    if table is None or not len(table):
        return ()
    fields = Recommendation.__dataclass_fields__
    return tuple(Recommendation(**{k: row[k] for k in fields}) for row in table.to_dict("records"))


def _decide(
    arms, scope, rule, share, means: np.ndarray, best, min_effect, level, th: DecisionThresholds, confirmed
) -> Recommendation:
    wins = arm_win_frequencies(means, len(arms))
    if best is None or best not in arms:
        best = arms[int(np.argmax(wins))]
    k = list(arms).index(best)
    j = k - 1 if k > 0 else int(np.argmax(means.mean(axis=0)))  # the treatment the numbers describe
    lift = means[:, j]
    lower, upper = np.quantile(lift, [(1 - level) / 2, (1 + level) / 2])
    prob_positive = float((lift > 0).mean())
    loss_ship = float(np.maximum(-lift, 0).mean())
    practical = (means > min_effect).mean(axis=0)  # (K-1,) P(lift > min_effect) per treatment
    confident = k > 0 and prob_positive >= th.ship_probability and loss_ship <= th.max_loss
    if confident and (confirmed is None or (scope, best) in confirmed):
        decision, reason = (
            SHIP,
            (
                f"P(lift > 0) = {prob_positive:.2f} >= {th.ship_probability:.2f}, "
                f"expected loss {loss_ship:.3g}"
            ),
        )
    elif float(practical.max()) < th.stop_probability:
        decision, reason = (
            STOP,
            (f"every treatment has P(lift > {min_effect:g}) < {th.stop_probability:.2f}: keep control"),
        )
    elif confident:
        decision, reason = CONTINUE, f"{best} is confident but not yet confirmed over enough rounds"
    elif k == 0:
        decision, reason = CONTINUE, "control leads; no treatment is settled either way"
    else:
        decision, reason = CONTINUE, f"{best} has P(lift > 0) = {prob_positive:.2f} < {th.ship_probability:.2f}"
    mean, sd = float(lift.mean()), float(lift.std())
    return Recommendation(
        scope,
        rule,
        share,
        decision,
        arms[j + 1],
        best,
        float(wins[k]),
        mean,
        float(lower),
        float(upper),
        prob_positive,
        float(practical[j]),
        loss_ship,
        float(np.maximum(lift, 0).mean()),
        _value_of_next_round(mean, sd),
        reason,
    )


def _value_of_next_round(mean: float, sd: float) -> float:
    tau = sd / math.sqrt(2.0)
    if tau <= 0:
        return 0.0
    z = mean / tau
    expected_best = mean * 0.5 * (1 + math.erf(z / math.sqrt(2))) + tau * math.exp(-0.5 * z * z) / math.sqrt(
        2 * math.pi
    )
    return max(0.0, expected_best - max(0.0, mean))
