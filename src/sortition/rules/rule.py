"""``Rule``: a conjunction of conditions, the same object offline (masks) and online (matches)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sortition.rules.condition import Condition


@dataclass(frozen=True)
class Rule:
    """A conjunction of :class:`Condition` s; the empty rule matches everyone.

    ``Rule(conditions)`` accepts Conditions or their JSON dicts. A rule IS a flag allocation's
    rule: ``to_json()`` gives the configuration's ``{"conditions": [...]}`` form.
    """

    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.conditions, (Condition, Mapping, str)):
            raise ValueError("Rule.conditions must be a list of conditions, not a single one")
        conditions = tuple(
            c if isinstance(c, Condition) else Condition.from_json(c) for c in self.conditions
        )
        object.__setattr__(self, "conditions", conditions)

    def __and__(self, other: Rule | Condition) -> Rule:
        extra = (other,) if isinstance(other, Condition) else other.conditions
        return Rule(self.conditions + extra)

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Request time: whether a subject's attributes satisfy every condition (never raises;
        anything that is not a mapping of attributes matches only the empty rule)."""
        if not isinstance(attributes, Mapping):
            return not self.conditions
        return all(c.matches(attributes) for c in self.conditions)

    def mask(self, frame_or_data: Any, _memo: dict | None = None):
        """Offline: boolean mask ``(n,)`` of the rows that satisfy every condition.

        Args:
            frame_or_data: a pandas DataFrame of raw covariates, or anything with a
                ``covariates`` DataFrame (``ExperimentData``) or a ``data`` holding one
                (``Posterior``).

        Raises:
            TypeError: for anything else. ValueError: for a condition on a column the frame
            lacks (most likely a typo; add the column with missing values to mean "missing").
        """
        import numpy as np
        import pandas as pd

        from sortition.rules.masks import condition_mask

        frame = _as_frame(frame_or_data, pd)
        mask = np.ones(len(frame), dtype=bool)
        for condition in self.conditions:
            if condition.attribute not in frame.columns:
                raise ValueError(
                    f"rule condition {condition.describe()!r} reads column {condition.attribute!r}, "
                    f"which the data lacks (columns: {', '.join(map(str, frame.columns))})"
                )
            if _memo is None:
                mask &= condition_mask(frame[condition.attribute], condition)
                continue
            if condition not in _memo:  # segments of one tree share conditions
                _memo[condition] = condition_mask(frame[condition.attribute], condition)
            mask &= _memo[condition]
        return mask

    @staticmethod
    def masks(rules: "list[Rule]", frame_or_data: Any):
        """Masks ``(G, n)`` of several rules over one frame, each distinct condition evaluated once."""
        import numpy as np

        memo: dict = {}
        return np.stack([rule.mask(frame_or_data, memo) for rule in rules]) if rules else None

    def describe(self) -> str:
        """``device ONE_OF {mobile, tablet} AND recency_days > 3.5``; ``everyone`` when empty."""
        return " AND ".join(c.describe() for c in self.conditions) or "everyone"

    def __str__(self) -> str:
        return self.describe()

    def to_json(self) -> dict[str, Any]:
        return {"conditions": [c.to_json() for c in self.conditions]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | list) -> Rule:
        """From the configuration's ``{"conditions": [...]}`` form (or the bare list)."""
        if isinstance(obj, Mapping):
            if "conditions" not in obj:
                raise ValueError(f"a rule needs a 'conditions' list; got keys {sorted(obj)}")
            obj = obj["conditions"]
        if not isinstance(obj, list):
            raise ValueError(f"a rule's conditions must be a list, got {type(obj).__name__}")
        return cls(tuple(Condition.from_json(c) for c in obj))


def _as_frame(obj: Any, pd):
    if isinstance(obj, pd.DataFrame):
        return obj
    for path in (("covariates",), ("data", "covariates")):
        target = obj
        for name in path:
            target = getattr(target, name, None)
        if isinstance(target, pd.DataFrame):
            return target
    raise TypeError(
        f"Rule.mask needs a pandas DataFrame or ExperimentData, got {type(obj).__name__}"
    )
