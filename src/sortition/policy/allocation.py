"""Thompson sampling at segment granularity: each arm's weight is P(arm is the segment's best)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sortition import display

from sortition.policy.arms import iterative_floor_clip
from sortition.policy.segments import Segment
from sortition.policy.summary import SegmentSummary
from sortition.posterior import Posterior
from sortition.posterior.calibration import Calibration
from sortition.rules import AnyOf, Rule


def require_posterior(posterior: Any, caller: str):
    """The boundary check shared by the policy functions: a Posterior with observed data."""
    if not isinstance(posterior, Posterior):
        raise TypeError(
            f"{caller} needs a sortition.posterior.Posterior, got {type(posterior).__name__}; "
            "fit one with sortition.posterior.fit or wrap draws with Posterior.from_draws(..., data=...)"
        )
    if posterior.data is None:
        raise ValueError(
            f"{caller}: the posterior carries no observed data (posterior.data is None), so segment "
            "rules have no visitors to match; build it with Posterior.from_draws(draws, data=ExperimentData)"
        )
    return posterior.data


def segment_masks(posterior: Posterior, segments: Sequence[tuple[Any, Rule | AnyOf]]) -> np.ndarray:
    """Members of each ``(segment_id, rule)``: (G, n) bool, each distinct condition evaluated once.

    ValueError for a segment that matches no visitor."""
    frame = posterior.data.covariates
    memo: dict = {}
    masks = np.empty((len(segments), posterior.n), dtype=bool)
    for g, (segment_id, rule) in enumerate(segments):
        masks[g] = rule.mask(frame, memo)
        if not masks[g].any():
            raise ValueError(
                f"segment {segment_id!r} ({rule.describe()}) matches no visitor; an allocation over an "
                "empty segment is undefined: drop the segment or widen its rule"
            )
    return masks


class Allocation(dict):
    """``{segment id: {arm: weight}}`` (a dict) that a notebook shows as a table.

    ``calibrated``: whether the win probabilities went through a calibration's P(best) reliability curve."""

    calibrated: bool = False

    def to_frame(self) -> pd.DataFrame:
        """One row per segment (index: segment id), one column per arm (control first)."""
        frame = pd.DataFrame.from_dict(dict(self), orient="index")
        frame.index.name = "segment"
        return frame

    def _repr_html_(self) -> str:
        arms = list(next(iter(self.values()))) if self else []
        rows = [[seg, *[display.percent(w.get(a, 0.0), 1) for a in arms]] for seg, w in self.items()]
        return display.table(["segment", *arms], rows)


def allocation_weights(raw: np.ndarray, epsilon: float, calibration: Calibration | None = None) -> np.ndarray:
    """(K,) traffic weights of one segment from its (K,) raw win frequencies (summing to 1).

    With a ``calibration`` that holds a P(best) reliability curve, each arm's win frequency is first
    mapped through it (raw -> calibrated probability of being best, monotone) and renormalized to sum
    to 1 (left raw if every mapped value is 0); then the exploration floor-clip
    (:func:`~sortition.policy.arms.iterative_floor_clip`). The plan's control and explore cells are
    applied later, unchanged. Without one, the raw frequencies go straight to the floor-clip."""
    raw = np.asarray(raw, dtype=np.float64)
    if calibrates_allocation(calibration):
        mapped = calibration.best_probability(raw)
        total = mapped.sum()
        raw = mapped / total if total > 0 else raw
    return iterative_floor_clip(raw, float(epsilon))


def calibrates_allocation(calibration: Calibration | None) -> bool:
    """Whether :func:`allocation_weights` maps win frequencies through this calibration (it has a
    measured P(best) reliability curve)."""
    return calibration is not None and len(calibration.p_best[0]) > 0


def thompson_allocation(
    posterior: Posterior, segments: Sequence[Segment], epsilon: float = 0.02, *, summary: SegmentSummary | None = None
) -> Allocation:
    """Per segment, each arm's traffic weight = posterior probability that it is the segment's best.

    Each draw votes once per segment, with the draw's contrasts averaged over the segment's
    visitors (:func:`~sortition.policy.arms.best_arms`: control when no contrast is positive).
    The raw win frequencies then pass the exploration floor-clip
    (:func:`~sortition.policy.arms.iterative_floor_clip`, inert when no arm is below
    ``epsilon / K``); when the posterior carries a calibration (``fit(..., calibration=PATH)``), they
    first go through its P(best) reliability curve (:func:`allocation_weights`).

    Args:
        posterior: a Posterior with observed data (its covariates are what rules match).
        segments: objects with ``id`` and ``rule`` (e.g. ``fit_policy_tree(...).segments``).
        epsilon: exploration mass in [0, 1]; 0 returns raw win frequencies.
        summary: the round's :class:`~sortition.policy.summary.SegmentSummary` of these segments (e.g. the
            tree's ``summary``), so the draws are not read again; None computes it.

    Returns:
        :class:`Allocation`: ``{segment.id: {arm: weight}}`` (a dict; ``.to_frame()`` for a table), inner
        dicts in arm order (control first), summing to 1; ``.calibrated`` says whether the reliability
        curve was applied.
    """
    if not isinstance(epsilon, numbers.Real) or not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"thompson_allocation: epsilon must be in [0, 1], got {epsilon!r}")
    require_posterior(posterior, "thompson_allocation")
    checked = []
    for position, seg in enumerate(segments):
        if not isinstance(getattr(seg, "rule", None), (Rule, AnyOf)) or not hasattr(seg, "id"):
            raise TypeError(
                f"segments[{position}] must have an id and a sortition.rules.Rule rule, got {type(seg).__name__}"
            )
        checked.append(seg)
    ids = [seg.id for seg in checked]
    if len(set(ids)) != len(ids):
        raise ValueError(f"segment ids must be unique, got {ids}")
    allocation = Allocation()
    allocation.calibrated = calibrates_allocation(posterior.calibration)
    if not checked:
        return allocation
    if summary is None or not summary.covers(checked):
        masks = segment_masks(posterior, [(seg.id, seg.rule) for seg in checked])  # validate all first
        summary = SegmentSummary.compute(posterior, ids, masks)
    for seg, raw in zip(checked, summary.win, strict=True):
        weights = allocation_weights(raw, float(epsilon), posterior.calibration)
        allocation[seg.id] = {arm: float(w) for arm, w in zip(posterior.arms, weights)}
    return allocation
