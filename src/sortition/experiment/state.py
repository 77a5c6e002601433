"""The committed state of a sequential experiment: what one round hands to the next.

Its own module so that the loop (``sequential``) and the state file (``persistence``) both depend on
it and not on each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sortition.experiment.cells import Plan
from sortition.experiment.results import RoundResult
from sortition.posterior.warm import WarmStart


@dataclass(frozen=True)
class ExperimentState:
    """Everything committed after ``round`` rounds; replaced whole, never mutated.

    ``posterior`` and ``tree`` are the last fit's (not saved: a reloaded experiment refits them);
    ``warm_start`` is the last BCF fit's forests at its last draw (saved: the next round starts from it).
    """

    round: int
    data: pd.DataFrame | None
    plan: Plan
    active_arms: tuple[str, ...]
    results: tuple[RoundResult, ...] = ()
    plans: tuple[Plan, ...] = ()
    loser_streak: Mapping[str, int] = field(default_factory=dict)
    winner_streak: Mapping[tuple[str, str], int] = field(default_factory=dict)
    posterior: Any = None
    tree: Any = None
    warm_start: WarmStart | None = None
