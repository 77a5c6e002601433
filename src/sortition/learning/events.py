"""Logged bandit events in columnar form: what training and off-policy evaluation read.

One row per served bandit action: the subject's and the chosen action's attribute groups (the
same four groups Eppo's bandit events carry), the chosen action, the probability with which it
was chosen, and the reward observed afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Accepted spellings of each field: Sortition's snake_case, then Eppo's bandit-event camelCase.
_FIELDS: dict[str, tuple[str, ...]] = {
    "action": ("action", "action_key", "actionKey"),
    "reward": ("reward", "outcome", "value"),
    "action_probability": ("action_probability", "actionProbability", "propensity"),
    "subject_numeric": ("subject_numeric_attributes", "subjectNumericAttributes"),
    "subject_categorical": ("subject_categorical_attributes", "subjectCategoricalAttributes"),
    "action_numeric": ("action_numeric_attributes", "actionNumericAttributes"),
    "action_categorical": ("action_categorical_attributes", "actionCategoricalAttributes"),
    "subject": ("subject", "subject_key", "subjectKey"),
    # every action offered at the decision: Sortition's name, the store's column, the event field
    "offered": ("offered", "offered_actions", "sortitionOfferedActions"),
}
_REQUIRED = ("action", "reward", "action_probability")


def _pick(record: Mapping[str, Any], field: str) -> Any:
    for name in _FIELDS[field]:
        if name in record:
            return record[name]
    return None


def _as_dict(value: Any, field: str, row: int) -> dict[str, Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, str):  # JSON text, as a store may keep it
        import json

        value = json.loads(value) if value else {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{field} of row {row} is {type(value).__name__}; expected a dict of attribute -> value "
            "(or JSON text of one, or None for no attributes)"
        )
    return dict(value)


@dataclass(frozen=True, eq=False)
class BanditEvents:
    """Logged bandit events, one row per served action.

    Attributes:
        action: (n,) object array of the chosen action keys.
        reward: (n,) float64 rewards (continuous, or 0/1 for binary outcomes).
        action_probability: (n,) float64 probability with which the logger chose ``action``, in (0, 1].
        subject_numeric, subject_categorical, action_numeric, action_categorical: length-n tuples
            of dicts, the four attribute groups of the subject and of the chosen action.
        subject: (n,) object array of subject keys, or None.
        offered: per row, the offered actions as ``{action_key: {"numericAttributes": {...},
            "categoricalAttributes": {...}}}`` (None for a row logged without them), or None when
            no row has them. Needed only to evaluate a candidate bandit model off-line (its
            probabilities depend on every offered action).
    """

    action: np.ndarray
    reward: np.ndarray
    action_probability: np.ndarray
    subject_numeric: tuple[dict[str, Any], ...]
    subject_categorical: tuple[dict[str, Any], ...]
    action_numeric: tuple[dict[str, Any], ...]
    action_categorical: tuple[dict[str, Any], ...]
    subject: np.ndarray | None = None
    offered: tuple[dict[str, dict[str, dict[str, Any]]] | None, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.action)
        for name in (
            "reward",
            "action_probability",
            "subject_numeric",
            "subject_categorical",
            "action_numeric",
            "action_categorical",
        ):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows but action has {n}")
        if self.offered is not None and len(self.offered) != n:
            raise ValueError(f"offered has {len(self.offered)} rows but action has {n}")
        bad = np.flatnonzero(~np.isfinite(self.reward))
        if bad.size:
            raise ValueError(f"reward is not finite in rows {bad[:5].tolist()}; drop or fill those events")
        p = self.action_probability
        bad = np.flatnonzero(~((p > 0) & (p <= 1)))
        if bad.size:
            raise ValueError(
                f"action_probability must be in (0, 1]; rows {bad[:5].tolist()} have "
                f"{p[bad[:5]].tolist()}. Log the probability the serving policy gave the chosen action."
            )

    @property
    def n(self) -> int:
        return len(self.action)

    @property
    def actions(self) -> tuple[str, ...]:
        """The distinct chosen actions, sorted."""
        return tuple(sorted(set(self.action.tolist())))

    def take(self, rows: np.ndarray) -> BanditEvents:
        """The events at ``rows`` (an index array or boolean mask)."""
        idx = np.arange(self.n)[rows]
        pick = lambda seq: tuple(seq[i] for i in idx)  # noqa: E731
        return BanditEvents(
            action=self.action[idx],
            reward=self.reward[idx],
            action_probability=self.action_probability[idx],
            subject_numeric=pick(self.subject_numeric),
            subject_categorical=pick(self.subject_categorical),
            action_numeric=pick(self.action_numeric),
            action_categorical=pick(self.action_categorical),
            subject=None if self.subject is None else self.subject[idx],
            offered=None if self.offered is None else pick(self.offered),
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> BanditEvents:
        """Events from dicts, with snake_case or Eppo's camelCase keys.

        Each record needs ``action``, ``reward`` and ``action_probability`` (``actionProbability``);
        the four attribute groups default to empty; ``offered`` (optional) is the offered action set.
        """
        rows = list(records)
        if not rows:
            raise ValueError("no events: train or evaluate on at least one logged bandit event")
        cols: dict[str, list[Any]] = {k: [] for k in _FIELDS}
        for i, rec in enumerate(rows):
            if not isinstance(rec, Mapping):
                raise TypeError(f"event {i} is {type(rec).__name__}; expected a dict")
            for field in _REQUIRED:
                if _pick(rec, field) is None:
                    raise ValueError(
                        f"event {i} has no {field!r} (accepted keys: {', '.join(_FIELDS[field])})"
                    )
            for field in _FIELDS:
                v = _pick(rec, field)
                if field.startswith(("subject_", "action_")) and field != "action_probability":
                    v = _as_dict(v, _FIELDS[field][0], i)
                elif field == "offered":
                    missing = v is None or (isinstance(v, float) and math.isnan(v))
                    v = None if missing else _as_dict(v, field, i)
                cols[field].append(v)
        offered = cols["offered"]
        has_subject = all(s is not None for s in cols["subject"])
        return cls(
            action=np.array([str(a) for a in cols["action"]], dtype=object),
            reward=np.asarray(cols["reward"], dtype=np.float64),
            action_probability=np.asarray(cols["action_probability"], dtype=np.float64),
            subject_numeric=tuple(cols["subject_numeric"]),
            subject_categorical=tuple(cols["subject_categorical"]),
            action_numeric=tuple(cols["action_numeric"]),
            action_categorical=tuple(cols["action_categorical"]),
            subject=np.array(cols["subject"], dtype=object) if has_subject else None,
            offered=tuple(offered) if any(o is not None for o in offered) else None,
        )

    @classmethod
    def from_frame(cls, frame: Any) -> BanditEvents:
        """Events from a pandas DataFrame with one column per field (either spelling)."""
        return cls.from_records(frame.to_dict(orient="records"))

    @classmethod
    def coerce(cls, events: Any) -> BanditEvents:
        """Accept BanditEvents, a DataFrame, or a sequence of dicts."""
        if isinstance(events, BanditEvents):
            return events
        if hasattr(events, "to_dict") and hasattr(events, "columns"):
            return cls.from_frame(events)
        if isinstance(events, Sequence | Iterable) and not isinstance(events, str | bytes | Mapping):
            return cls.from_records(events)
        raise TypeError(
            f"events is {type(events).__name__}; pass BanditEvents, a pandas DataFrame or a list of dicts"
        )
