"""Frozen results of one round of a sequential experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sortition import display
from sortition.experiment.cells import Plan
from sortition.policy.decisions import Recommendation, recommendations
from sortition.posterior import ArmLift

# One type for one concept: a treatment's lift vs control (mean, interval, P(lift > 0), relative lift
# when known) is the posterior's ArmLift; ``Lift`` is its name in the experiment's results.
Lift = ArmLift


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
    recommendations: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    tree: Any = field(default=None, repr=False, compare=False)
    seconds: dict[str, float] = field(default_factory=dict, compare=False)
    # share of the visitors so far whose segment or served arm changed from this round's plan to the next
    # (None for the first round; see steps.churn); P(the new segmentation's welfare is higher) when
    # last round's segments were kept or replaced (None when there were none to keep); whether the served
    # segments are established, i.e. kept unless a new tree wins (False for the provisional first tree)
    churn: float | None = None
    resegment_probability: float | None = None
    segments_established: bool = False
    # churn with each segment's most-allocated arm standing for the served arm (steps.churn without a
    # salt; churn itself reads the arm each visitor's shard is served); the segments whose lead arm would
    # have flipped without the evidence arm_switch_probability asks, so they kept last round's weights
    churn_top_arm: float | None = None
    held_arms: tuple = ()
    # whether the allocation's P(best arm) went through the calibration's reliability curve
    calibrated_allocation: bool = False
    # how far the next plan's optimized-cell weights moved from last round's toward this round's Thompson
    # weights: 1 unless the churn cap (max_churn, steps.limit_churn) held them back
    allocation_step: float = 1.0
    # how this round's segments came about (steps.segment_change): "first" (none to keep), "kept",
    # "same groups" (the new tree's, under other rules), "one segment" (one segment's visitors regrouped,
    # steps.change_one_segment), "new tree" (the new tree whole); "" in state files from before the field
    segment_change: str = ""

    @property
    def number(self) -> int:
        """The round as people count it (1 = the first round of data); ``round`` is 0-based, as logged."""
        return self.round + 1

    @property
    def decisions(self) -> tuple[Recommendation, ...]:
        """One decision per scope (overall first, then each segment): ``recommend``'s rows, where SHIP
        is a graduation. Saved with the state; empty only for a round that computed none."""
        return recommendations(self.recommendations)

    def decision(self, scope: Any) -> Recommendation | None:
        """The decision of one scope ("overall" or a segment id), or None."""
        return next((d for d in self.decisions if d.scope == scope), None)

    def _repr_html_(self) -> str:
        rows = []
        for s in self.segments:
            d = self.decision(s.id)
            rows.append([s.description, display.percent(s.share), s.best_arm,
                         display.probability(s.arm_best_probabilities.get(s.best_arm, 0.0)),
                         d.label if d is not None else "-",
                         ", ".join(f"{a} {display.percent(p)}"
                                   for a, p in s.arm_probabilities.items() if p > 0)])
        head = (f"<p><b>Round {self.number}</b>: {self.n_round:,} visitors ({self.n_total:,} in all), "
                f"{len(self.segments)} segments</p>")
        header = ["segment", "share", "best arm", "P(best)", "decision", "next allocation"]
        return head + display.table(header, rows)
