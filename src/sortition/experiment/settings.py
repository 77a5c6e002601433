"""``ExperimentSettings``: a sequential experiment's constructor keywords, frozen and validated in one place.

Validation is declarative: ``_CHECKS`` lists, per setting, the test a value must pass and what it
must be; ``ExperimentSettings.__post_init__`` runs them all and reports the first failure by name.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from sortition.experiment.cells import CellWeights
from sortition.experiment.schedules import Schedule, as_schedule

OUTCOMES = ("continuous", "binary", "revenue")
ENGINES = ("bcf", "stratified")


def _unit(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def _open_unit(v: Any) -> bool:
    return _unit(v) and 0.0 < v < 1.0


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _non_negative_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 0


def _mapping(v: Any) -> bool:
    return isinstance(v, Mapping) and all(isinstance(k, str) for k in v)


# (setting, test, what it must be)
_CHECKS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("key", lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    ("outcome", lambda v: v in OUTCOMES, f"one of {OUTCOMES}"),
    ("engine", lambda v: v in ENGINES, f"one of {ENGINES}"),
    ("fit_options", _mapping, "a dict of fit() keywords"),
    ("epsilon", _unit, "in [0, 1]"),
    ("max_depth", lambda v: v in (1, 2, 3) and not isinstance(v, bool), "1, 2 or 3"),
    ("min_leaf_share", lambda v: _unit(v) and 0.0 < v <= 0.5, "in (0, 0.5]"),
    ("tree_options", _mapping, "a dict of fit_policy_tree() keywords"),
    ("drop_below", _unit, "in [0, 1]"),
    ("drop_after", _positive_int, "a positive integer"),
    ("graduation_probability", _unit, "in [0, 1]"),
    ("graduation_loss", _non_negative_real, "a non-negative number"),
    ("graduation_rounds", _positive_int, "a positive integer"),
    ("level", _open_unit, "in (0, 1)"),
    ("covariates", lambda v: v is None or (isinstance(v, tuple) and all(isinstance(c, str) for c in v)),
     "None or a list of column names"),
    ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a non-negative integer"),
    ("warm_start", lambda v: isinstance(v, bool), "True or False"),
    ("resegment_probability", _unit, "in [0, 1]"),
    ("resegment_min_gain", _non_negative_real,
     "a non-negative number (a share of |control mean|, e.g. 0.002)"),
    ("arm_switch_probability", _unit, "in [0, 1] (the default is 0.8; 0 never holds an arm)"),
    ("max_churn", lambda v: _unit(v) and v > 0, "in (0, 1] (a share of visitors; 1 never limits)"),
    ("settle_rounds", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
     "a non-negative integer (rounds whose trees are provisional; the default is 2)"),
)


@dataclass(frozen=True)
class ExperimentSettings:
    """Everything that configures a sequential experiment except its arms (see ``SequentialExperiment``).

    ``schedule`` is a :class:`Schedule` or None; ``fit_options`` / ``tree_options`` are read-only
    mappings; ``covariates`` a tuple or None. ``warm_start``: each round's BCF fit starts from the
    previous round's forests (False: every round refits cold). ``resegment_probability``,
    ``resegment_min_gain``: last round's segments are replaced by the new tree's only when the posterior
    probability that the new tree's welfare exceeds theirs by more than ``resegment_min_gain`` x |control
    mean outcome| (the unit of ``graduation_loss``) is at least ``resegment_probability`` (0: always take
    the new tree); established segments change one segment per round (``steps.change_one_segment``).
    ``arm_switch_probability``: a kept segment's lead arm changes only when P(new leader's
    mean > incumbent's) is at least this; otherwise it keeps last round's weights (``steps.hold_arm_flips``).
    ``max_churn``: the most of the visitors so far a plan that keeps last round's segments may move (their
    served arm) once segments are established; weights that would move more move only part of the way
    (``steps.limit_churn``); on a round that changes one segment, the unchanged segments hold their
    weights when the change alone moves more. ``settle_rounds``: the first this many rounds' trees are
    provisional (replaced when more likely better than not, P >= 0.5; plans not capped); later ones are
    established.
    """

    key: str = "sortition-experiment"
    outcome: str = "continuous"
    engine: str = "bcf"
    fit_options: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule | None = None
    min_control_weight: float = 0.05
    min_explore_weight: float = 0.05
    epsilon: float = 0.02
    max_depth: int = 2
    min_leaf_share: float = 0.10
    tree_options: Mapping[str, Any] = field(default_factory=dict)
    drop_below: float = 0.01
    drop_after: int = 2
    graduation_probability: float = 0.95
    graduation_loss: float = 0.01
    graduation_rounds: int = 2
    level: float = 0.9
    covariates: tuple[str, ...] | None = None
    seed: int = 0
    warm_start: bool = True
    resegment_probability: float = 0.9
    resegment_min_gain: float = 0.002
    arm_switch_probability: float = 0.8
    max_churn: float = 0.08
    settle_rounds: int = 2

    def __post_init__(self) -> None:
        # normalize containers first, so a list or a dict is accepted and frozen
        set_ = object.__setattr__
        if self.fit_options is None:
            set_(self, "fit_options", {})
        if self.tree_options is None:
            set_(self, "tree_options", {})
        for name in ("fit_options", "tree_options"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                set_(self, name, MappingProxyType(dict(value)))
        if self.covariates is not None and not isinstance(self.covariates, str) and isinstance(
                self.covariates, Sequence):
            set_(self, "covariates", tuple(self.covariates))
        if self.schedule is not None:
            set_(self, "schedule", as_schedule(self.schedule))
        for name, test, expected in _CHECKS:
            value = getattr(self, name)
            if not test(value):
                raise ValueError(f"{name} must be {expected}, got {value!r}")
        self.weights  # noqa: B018 -- CellWeights checks the two floors and their sum

    @property
    def weights(self) -> CellWeights:
        """The control and explore cells' floors."""
        return CellWeights(self.min_control_weight, self.min_explore_weight)

    def to_json(self) -> dict[str, Any]:
        """The settings as constructor keywords, JSON-ready (``schedule`` as its list of sizes)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["fit_options"] = dict(self.fit_options)
        out["tree_options"] = dict(self.tree_options)
        out["covariates"] = None if self.covariates is None else list(self.covariates)
        out["schedule"] = None if self.schedule is None else list(self.schedule.sizes)
        return out
