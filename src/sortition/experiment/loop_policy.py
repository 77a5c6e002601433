"""``LoopPolicy``: the learning steps a sequential experiment drives, injected rather than imported.

The loop owns the round's bookkeeping (validation, drops, graduations, the plan, the commit); the
statistics come from the parts named here. The default is Sortition's own (BCF or stratified
posterior, welfare policy tree, segment Thompson allocation, SHIP/STOP/CONTINUE recommendations);
a test or a user swaps one part with ``dataclasses.replace(DEFAULT_POLICY, allocate=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sortition.policy import (
    PolicyTree,
    Segment,
    arm_win_frequencies,
    fit_policy_tree,
    policy_tree_from_rules,
    recommend,
    thompson_allocation,
)
from sortition.policy.allocation import allocation_weights
from sortition.policy.summary import SegmentSummary
from sortition.posterior import Posterior, fit


def population_allocation(posterior: Posterior, epsilon: float, summary: SegmentSummary) -> dict[str, float]:
    """Thompson weights for everyone (the plan's default, for visitors no segment matches), from the
    summary's ``"everyone"`` means (through the calibration's P(best) curve, as every segment's)."""
    raw = arm_win_frequencies(summary.extra["everyone"], posterior.n_arms)
    weights = allocation_weights(raw, epsilon, posterior.calibration)
    return {a: float(w) for a, w in zip(posterior.arms, weights, strict=True)}


def segment_allocation(posterior: Posterior, segments: Sequence[Segment], epsilon: float,
                       summary: SegmentSummary) -> dict[Any, dict[str, float]]:
    """``thompson_allocation`` over the round's summary."""
    return thompson_allocation(posterior, segments, epsilon=epsilon, summary=summary)


def recommendations(posterior: Posterior, segments: Sequence[Segment], summary: SegmentSummary,
                    **decision: Any) -> pd.DataFrame:
    """``recommend`` over the round's summary (``decision``: its thresholds, confirmed pairs and level)."""
    return recommend(posterior, segments, summary=summary, **decision)


@dataclass(frozen=True)
class LoopPolicy:
    """The parts of a round, each a plain function.

    Attributes:
        fit: ``fit(data, **options) -> Posterior`` (``sortition.posterior.fit``).
        tree: ``tree(posterior, **options) -> PolicyTree`` with ``.segments`` and ``.summary``
            (``fit_policy_tree``; the loop passes ``extra_masks``).
        keep: ``keep(posterior, rules, **options) -> PolicyTree``: last round's segments rescored
            (``policy_tree_from_rules``).
        allocate: ``allocate(posterior, segments, epsilon, summary) -> {segment id: {arm: weight}}``.
        population: ``population(posterior, epsilon, summary) -> {arm: weight}`` for unmatched visitors.
        recommend: ``recommend(posterior, segments, summary, **decision) -> DataFrame`` (one decision per
            scope; ``decision`` holds ``thresholds``, ``confirmed`` and ``level``, see ``steps.decision_options``).
    """

    fit: Callable[..., Posterior] = fit
    tree: Callable[..., PolicyTree] = fit_policy_tree
    keep: Callable[..., PolicyTree] = policy_tree_from_rules
    allocate: Callable[[Posterior, Sequence[Segment], float, SegmentSummary], dict] = segment_allocation
    population: Callable[[Posterior, float, SegmentSummary], dict[str, float]] = population_allocation
    recommend: Callable[..., pd.DataFrame] = recommendations


DEFAULT_POLICY = LoopPolicy()
