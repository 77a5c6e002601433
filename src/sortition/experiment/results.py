"""Frozen results of one round of a sequential experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sortition.experiment.cells import Plan


@dataclass(frozen=True)
class Lift:
    """One treatment's lift vs control: posterior mean, equal-tailed interval, P(lift > 0)."""

    arm: str
    mean: float
    lower: float
    upper: float
    prob_positive: float


@dataclass(frozen=True)
class SegmentResult:
    """A discovered segment after a round: its rule, share, winner and lifts."""

    id: Any
    description: str
    rule: Any
    share: float
    best_arm: str
    arm_best_probabilities: dict[str, float]
    lifts: tuple[Lift, ...]
    expected_loss: dict[str, float]  # of shipping each arm here (control included), metric units
    allocation: dict[str, float]  # Thompson weights (the optimized cell)
    arm_probabilities: dict[str, float]  # the next plan's probabilities (all cells)


@dataclass(frozen=True)
class CellObservation:
    """What one cell saw this round: its rows, mean outcome, and lift vs the control cell.

    ``empirical_lift`` is the cell's mean outcome minus the control cell's; ``model_lift``
    (with a 90% interval) is the posterior mean of the cell's rows' own contrasts (0 for rows
    on control): the effect of the cell's assignments, by the model.
    """

    cell: str
    n: int
    mean_outcome: float
    empirical_lift: float | None
    model_lift: float
    model_lower: float
    model_upper: float


@dataclass(frozen=True)
class Graduation:
    """A proposed winner for a segment (never shipped automatically)."""

    segment: str
    arm: str
    rounds: int
    prob_positive: float
    expected_loss: float


@dataclass(frozen=True)
class RoundResult:
    """Everything one ``advance()`` learned, and the plan it hands to the next round."""

    round: int
    n_round: int
    n_total: int
    lifts: tuple[Lift, ...]
    ipw_arm_means: dict[str, float]
    segments: tuple[SegmentResult, ...]
    cells: tuple[CellObservation, ...]
    active_arms: tuple[str, ...]
    dropped: tuple[str, ...]
    graduations: tuple[Graduation, ...]
    plan: Plan
    recommendations: Any = field(default=None, repr=False, compare=False)
    tree: Any = field(default=None, repr=False, compare=False)
    seconds: dict[str, float] = field(default_factory=dict, compare=False)
    # share of the visitors so far whose segment or served arm changed from this round's plan to the next
    # (None for the first round; see steps.churn); P(the new segmentation's welfare is higher) when
    # last round's segments were kept or replaced (None when there were none to keep)
    churn: float | None = None
    resegment_probability: float | None = None
