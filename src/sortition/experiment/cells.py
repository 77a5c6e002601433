"""Cells and plans: how a round's traffic is split, per segment, over cells and arms.

Every segment's traffic is a mixture of three cells:

- ``control``: always the control arm (a clean, unadaptive comparison everywhere);
- ``explore``: uniform over the active arms, control included (keeps every arm measured);
- ``optimized``: the segment's Thompson weights (what the posterior currently favours).

``min_control_weight`` and ``min_explore_weight`` are floors the plan never goes below; the
optimized cell gets the rest. A row's propensity is the plan's probability of its arm in its
segment (the mixture over cells), which is what the model and the reported lifts use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CELLS = ("control", "explore", "optimized")
_TOL = 1e-9


@dataclass(frozen=True)
class CellWeights:
    """Cell shares of every segment's traffic: ``control + explore + optimized == 1``."""

    control: float = 0.05
    explore: float = 0.05

    def __post_init__(self) -> None:
        for name in ("control", "explore"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TypeError(f"min_{name}_weight must be a finite number, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"min_{name}_weight must be in [0, 1], got {value}")
        if self.control + self.explore > 1.0 + _TOL:
            raise ValueError(
                f"min_control_weight + min_explore_weight must be at most 1, got "
                f"{self.control} + {self.explore}; lower one of them"
            )

    @property
    def optimized(self) -> float:
        return max(0.0, 1.0 - self.control - self.explore)

    def as_dict(self) -> dict[str, float]:
        return {"control": float(self.control), "explore": float(self.explore), "optimized": self.optimized}


@dataclass(frozen=True)
class ShardBlock:
    """The shards of ``ranges`` (each ``(start, end)``, end exclusive, ascending) serve ``arm`` in ``cell``."""

    arm: str
    cell: str
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SegmentPlan:
    """One segment's split: joint probabilities ``cells[cell][arm]`` over cells and arms.

    ``rule`` is a :class:`sortition.rules.Rule` (``None`` for the catch-all that matches
    everyone); ``optimized`` holds the Thompson weights the optimized cell uses. ``shards`` is the
    segment's shard layout when it was carried over from last round's (``export.carry_layout``:
    as few subjects as possible change arm); None means the contiguous layout
    (``export.shard_layout``), which every first plan uses.
    """

    id: Any
    rule: Any
    description: str
    optimized: dict[str, float]
    cells: dict[str, dict[str, float]]
    shards: tuple[ShardBlock, ...] | None = None

    @property
    def arm_probabilities(self) -> dict[str, float]:
        """The probability of each arm in this segment (summed over cells), arm order."""
        arms = list(self.optimized)
        return {arm: float(sum(self.cells[c].get(arm, 0.0) for c in CELLS)) for arm in arms}

    def propensity(self, arm: str) -> float:
        return self.arm_probabilities[arm]


@dataclass(frozen=True)
class Plan:
    """A round's plan: per segment (tree order) the cell x arm split, plus a catch-all.

    Attributes:
        arms: every arm, control first.
        active_arms: the arms still served (dropped losers removed; control always kept).
        weights: the cell shares.
        segments: the segment plans, in tree order.
        default: the catch-all for subjects no segment rule matches.
        round: the round this plan is served in (0 = the first, before any data).
    """

    arms: tuple[str, ...]
    active_arms: tuple[str, ...]
    weights: CellWeights
    segments: tuple[SegmentPlan, ...]
    default: SegmentPlan
    round: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def control(self) -> str:
        return self.arms[0]

    def segment(self, segment_id: Any) -> SegmentPlan:
        for seg in self.segments:
            if seg.id == segment_id:
                return seg
        if segment_id == self.default.id:
            return self.default
        raise KeyError(f"no segment {segment_id!r} in this plan; segments: {[s.id for s in self.segments]}")

    def arm_probability_matrix(self) -> np.ndarray:
        """(n_segments + 1, K): arm probabilities per segment, the catch-all last."""
        rows = [list(s.arm_probabilities.values()) for s in (*self.segments, self.default)]
        return np.asarray(rows, dtype=float)

    def segment_index(self, frame: Any) -> np.ndarray:
        """(n,) position of the allocation serving each row: the first segment whose rule
        matches (tree order, as the flag evaluates), ``len(segments)`` for the catch-all.

        Args:
            frame: raw covariates (a DataFrame, or ExperimentData).
        """
        n = len(frame.covariates) if hasattr(frame, "covariates") else len(frame)
        index = np.full(n, len(self.segments), dtype=np.int64)
        free = np.ones(n, dtype=bool)
        for i, seg in enumerate(self.segments):
            mask = free.copy() if seg.rule is None else free & np.asarray(seg.rule.mask(frame), dtype=bool)
            index[mask] = i
            free &= ~mask
        return index

    def probabilities(self, frame: Any) -> np.ndarray:
        """(n, K) the plan's arm probabilities for each row (arm order)."""
        return self.arm_probability_matrix()[self.segment_index(frame)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (rules in the flag-configuration form)."""

        def seg(s: SegmentPlan) -> dict[str, Any]:
            return {
                "id": s.id,
                "rule": None if s.rule is None else s.rule.to_json(),
                "description": s.description,
                "optimized": s.optimized,
                "cells": s.cells,
                "arm_probabilities": s.arm_probabilities,
            }

        return {
            "round": self.round,
            "arms": list(self.arms),
            "active_arms": list(self.active_arms),
            "weights": self.weights.as_dict(),
            "segments": [seg(s) for s in self.segments],
            "default": seg(self.default),
        }


def cell_split(
    arms: Sequence[str],
    active_arms: Sequence[str],
    optimized: Mapping[str, float],
    weights: CellWeights,
) -> dict[str, dict[str, float]]:
    """Joint probabilities ``{cell: {arm: p}}`` for one segment (the mixture of cells).

    Args:
        arms: all arms, control first.
        active_arms: the arms still served; must include the control.
        optimized: Thompson weights over the arms (any arm not active is ignored and the
            rest renormalized; all-zero on the active arms falls back to uniform).
        weights: the cell shares.
    """
    control = arms[0]
    active = [a for a in arms if a in set(active_arms)]
    if control not in active:
        raise ValueError(f"active_arms must include the control arm {control!r}")
    opt = np.array([max(0.0, float(optimized.get(a, 0.0))) for a in active])
    if not np.all(np.isfinite(opt)):
        raise ValueError(f"optimized weights must be finite, got {dict(optimized)}")
    opt = opt / opt.sum() if opt.sum() > 0 else np.full(len(active), 1.0 / len(active))
    opt_map = dict(zip(active, opt, strict=True))
    k = len(active)
    return {
        "control": {a: (float(weights.control) if a == control else 0.0) for a in arms},
        "explore": {a: (float(weights.explore) / k if a in opt_map else 0.0) for a in arms},
        "optimized": {a: float(weights.optimized * opt_map.get(a, 0.0)) for a in arms},
    }


def segment_plan(
    segment_id: Any,
    rule: Any,
    arms: Sequence[str],
    active_arms: Sequence[str],
    optimized: Mapping[str, float],
    weights: CellWeights,
    description: str | None = None,
) -> SegmentPlan:
    unknown = [a for a in optimized if a not in arms]
    if unknown:
        raise ValueError(f"segment {segment_id!r}: optimized weights name unknown arms {unknown}; arms are {list(arms)}")
    cells = cell_split(arms, active_arms, optimized, weights)
    opt_share = weights.optimized
    opt_norm = {a: (cells["optimized"][a] / opt_share if opt_share > 0 else 0.0) for a in arms}
    if description is None:
        description = "everyone" if rule is None else _describe(rule)
    return SegmentPlan(id=segment_id, rule=rule, description=description, optimized=opt_norm, cells=cells)


def _describe(rule: Any) -> str:
    describe = getattr(rule, "describe", None)
    text = describe() if callable(describe) else str(rule)
    return text or "everyone"


def make_plan(
    arms: Sequence[str],
    segments: Sequence[tuple[Any, Any]],
    allocation: Mapping[Any, Mapping[str, float]],
    *,
    weights: CellWeights | None = None,
    active_arms: Sequence[str] | None = None,
    default_allocation: Mapping[str, float] | None = None,
    round: int = 0,
    descriptions: Mapping[Any, str] | None = None,
) -> Plan:
    """Build a :class:`Plan` from segments and their Thompson weights.

    Args:
        arms: all arms, control first.
        segments: ``(segment_id, rule)`` pairs in tree order.
        allocation: ``{segment_id: {arm: weight}}`` (e.g. from ``thompson_allocation``).
        weights: cell shares (default: 0.05 control, 0.05 explore).
        active_arms: the arms still served (default: all).
        default_allocation: Thompson weights for the catch-all (default: uniform).
        round: the round this plan is served in.
    """
    arms = tuple(arms)
    if len(arms) < 2 or len(set(arms)) != len(arms):
        raise ValueError(f"arms must be at least two distinct names, control first; got {list(arms)}")
    weights = weights or CellWeights()
    active = tuple(a for a in arms if a in set(active_arms)) if active_arms is not None else arms
    missing = [sid for sid, _ in segments if sid not in allocation]
    if missing:
        raise ValueError(f"allocation has no weights for segments {missing}")
    descriptions = descriptions or {}
    seg_plans = tuple(
        segment_plan(sid, rule, arms, active, allocation[sid], weights, descriptions.get(sid))
        for sid, rule in segments
    )
    uniform = {a: 1.0 / len(active) for a in active}
    default = segment_plan(
        "default", None, arms, active, default_allocation or uniform, weights, "everyone else"
    )
    return Plan(arms=arms, active_arms=active, weights=weights, segments=seg_plans, default=default, round=round)


def uniform_plan(arms: Sequence[str], weights: CellWeights | None = None, round: int = 0) -> Plan:
    """The first round's plan: one segment (everyone), optimized cell uniform over the arms."""
    arms = tuple(arms)
    uniform = {a: 1.0 / len(arms) for a in arms}
    return make_plan(arms, [(0, None)], {0: uniform}, weights=weights, round=round, descriptions={0: "everyone"})
