"""``Segment``: one readable group of visitors and what the posterior says about it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sortition.rules import AnyOf, Rule


@dataclass(frozen=True)
class Segment:
    """A leaf of a policy tree (or a hand-made segment: only ``id`` and ``rule`` are required).

    Attributes:
        id: segment id, unique within its tree.
        rule: the conjunction of conditions that defines membership (offline and online), or an
            ``AnyOf`` of several (a merged segment: "x <= t OR x IS NULL").
        share: fraction of the analysed visitors in the segment.
        arm_best_probabilities: ``{arm: P(arm is best for the segment)}``, control first: the raw
            win frequencies of the segment-mean contrasts (the code path of ``thompson_allocation``).
        best_arm: the arm with the highest posterior expected reward in the segment.
        gate_estimate: posterior mean of the segment-average effect of the best treatment arm
            (``best_arm``, or the best non-control arm when control is best), in metric units.
        gate_interval: its equal-tailed credible interval ``(lower, upper)``.
        stability: share of seeded bootstrap refits with a leaf of Jaccard >= 0.5 with this one
            (NaN when not computed).
    """

    id: int
    rule: Rule
    share: float = math.nan
    arm_best_probabilities: Mapping[Any, float] = field(default_factory=dict)
    best_arm: Any = None
    gate_estimate: float = math.nan
    gate_interval: tuple[float, float] = (math.nan, math.nan)
    stability: float = math.nan

    def __post_init__(self) -> None:
        if not isinstance(self.rule, (Rule, AnyOf)):
            raise TypeError(f"Segment.rule must be a sortition.rules.Rule or AnyOf, got {type(self.rule).__name__}")
