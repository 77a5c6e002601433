"""Events as dicts -> validated rows in table column order, with deterministic event ids.

Validation happens once, here, before anything is written: a batch with a bad event raises a
ValueError naming each bad field and the first bad events, and nothing of the batch is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sortition.serving.events import OFFERED_ACTIONS
from sortition.store.schema import ASSIGNMENTS, BANDIT_EVENTS, OUTCOMES, Table

# Keys of Sortition's own extraLogging entries, defined here only: written by the plan export
# (experiment.export), read back by the store and by the simulation: the experiment cell, the
# segment (allocation), the probability with which the variation was assigned, and the round (0-based).
CELL_KEY = "cell"
SEGMENT_KEY = "segment"
PROPENSITY_KEY = "propensity"
ROUND_KEY = "round"

_ID_KEYS = ("event_id", "eventId")
_ASSIGNMENT_FIELDS = frozenset(
    {"featureFlag", "allocation", "experiment", "variation", "subject", "subjectAttributes",
     "timestamp", "metaData", "extraLogging", *_ID_KEYS}
)
_MAX_SHOWN = 5


class FieldError(ValueError):
    """One bad field of one event (collected per batch into a single ValueError)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def to_utc(value: Any, field: str = "timestamp") -> dt.datetime:
    """A timestamp as a naive UTC datetime (microseconds).

    Accepts a datetime (naive means UTC; aware is converted), an ISO 8601 / RFC 3339 string
    ("2024-05-01T12:00:00Z"), a pandas Timestamp or numpy datetime64, or a number of seconds since
    the Unix epoch.
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise FieldError(field, f"{value!r} is not an ISO 8601 timestamp") from None
    elif hasattr(value, "to_pydatetime"):  # pandas Timestamp
        if value != value:  # NaT
            raise FieldError(field, "is missing (NaT)")
        value = value.to_pydatetime()
    elif type(value).__name__ == "datetime64":
        import numpy as np

        if np.isnat(value):
            raise FieldError(field, "is missing (NaT)")
        value = value.astype("datetime64[us]").item()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise FieldError(field, f"{value!r} is not a finite number of seconds")
        if abs(value) > 1e11:
            raise FieldError(field, f"{value!r} looks like milliseconds; give seconds since the epoch")
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise FieldError(field, f"is missing or not a timestamp ({type(value).__name__}); give a datetime "
                         "or an RFC 3339 string")
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _text(event: Mapping, field: str, required: bool = True) -> str | None:
    value = event.get(field)
    if value is None:
        if required:
            raise FieldError(field, "is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(field, f"must be a string, got {type(value).__name__} {value!r:.60}")
    value = str(value)
    if required and value == "":
        raise FieldError(field, "is empty")
    return value


def _number(value: Any, field: str, required: bool = True) -> float | None:
    if value is None:
        if required:
            raise FieldError(field, "is missing")
        return None
    try:
        number = float(value)  # Eppo's extraLogging values are strings ("0.25")
    except (TypeError, ValueError):
        raise FieldError(field, f"must be a number, got {value!r:.60}") from None
    if not math.isfinite(number):
        raise FieldError(field, f"must be finite, got {value!r}")
    return number


def _probability(value: Any, field: str, required: bool = True) -> float | None:
    p = _number(value, field, required)
    if p is not None and not 0.0 < p <= 1.0:
        raise FieldError(field, f"must be a probability in (0, 1], got {value!r}")
    return p


def _json(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FieldError(field, f"must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as err:
        raise FieldError(field, f"is not JSON-serializable ({err})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _event_id(event: Mapping, kind: str, content: tuple) -> str:
    for key in _ID_KEYS:
        given = event.get(key)
        if given is not None:
            if not isinstance(given, str) or not given:
                raise FieldError(key, f"must be a non-empty string, got {given!r:.60}")
            return given
    return derive_event_id(kind, content)


def derive_event_id(kind: str, content: tuple) -> str:
    """A deterministic id from an event's normalized content: the same event always gets the same id,
    so a retried append never duplicates it. 32 hex digits of SHA-256 (128 bits)."""
    text = json.dumps([kind, *content], separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def assignment_row(event: Mapping) -> tuple:
    """An assignment event as Eppo's SDKs log it -> a row of ``assignments``.

    ``extraLogging`` entries may sit at the top level (as Eppo logs them) or in an ``extraLogging``
    dict; Sortition's ``cell``, ``propensity`` and ``round`` entries get their own columns.
    """
    flag = _text(event, "featureFlag")
    allocation = _text(event, "allocation", required=False)
    experiment = _text(event, "experiment", required=False)
    variation = _text(event, "variation")
    subject = _text(event, "subject")
    ts = to_utc(event.get("timestamp"))
    nested = event.get("extraLogging") or {}
    if not isinstance(nested, Mapping):
        raise FieldError("extraLogging", f"must be a dict, got {type(nested).__name__}")
    extra = {k: v for k, v in event.items() if k not in _ASSIGNMENT_FIELDS}
    extra.update(nested)
    cell = extra.get(CELL_KEY)
    cell = None if cell is None else str(cell)
    propensity = _probability(extra.get(PROPENSITY_KEY), PROPENSITY_KEY, required=False)
    round_number = _number(extra.get(ROUND_KEY), ROUND_KEY, required=False)
    if round_number is not None:
        if round_number != int(round_number):
            raise FieldError(ROUND_KEY, f"must be a whole number, got {extra.get(ROUND_KEY)!r}")
        round_number = int(round_number)
    attributes = _json(event.get("subjectAttributes"), "subjectAttributes")
    extra_json = _json(extra, "extraLogging") if extra else None
    meta = _json(event.get("metaData"), "metaData")
    content = (flag, allocation, experiment, variation, subject, ts, attributes, extra_json)
    event_id = _event_id(event, "assignment", content)
    return (event_id, flag, allocation, experiment, variation, subject, ts, cell, propensity,
            round_number, attributes, extra_json, meta)


_GROUPS = ("numericAttributes", "categoricalAttributes")


def _offered_actions(value: Any, action: str) -> str | None:
    """Sortition's offered-action field -> normalized JSON text (None when not logged).

    ``{action_key: {"numericAttributes": {name: number}, "categoricalAttributes": {name: value}}}``;
    a missing group is empty. The chosen action must be among the offered ones.
    """
    if value is None:
        return None
    field = OFFERED_ACTIONS
    if not isinstance(value, Mapping) or not value:
        raise FieldError(field, "must be a non-empty dict {action_key: {numericAttributes, "
                         f"categoricalAttributes}}}}, got {value!r:.60}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, groups in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int)) or key == "":
            raise FieldError(field, f"action keys must be non-empty strings, got {key!r:.40}")
        key = str(key)  # as the action field itself is stored
        groups = {} if groups is None else groups
        if not isinstance(groups, Mapping) or set(groups) - set(_GROUPS):
            raise FieldError(field, f"action {key!r} must map to a dict with keys {list(_GROUPS)}, "
                             f"got {groups!r:.60}")
        numeric = groups.get("numericAttributes") or {}
        categorical = groups.get("categoricalAttributes") or {}
        if not isinstance(numeric, Mapping) or not isinstance(categorical, Mapping):
            raise FieldError(field, f"action {key!r}: attribute groups must be dicts")
        for name, x in numeric.items():
            if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
                raise FieldError(field, f"action {key!r}: numeric attribute {name!r} is {x!r:.40}, "
                                 "not a finite number")
        out[key] = {"numericAttributes": dict(numeric), "categoricalAttributes": dict(categorical)}
    if action not in out:
        raise FieldError(field, f"does not contain the chosen action {action!r} (offered: {sorted(out)[:5]})")
    return json.dumps(out, sort_keys=True, separators=(",", ":"), default=_json_default)


def bandit_row(event: Mapping) -> tuple:
    """A bandit action event as Eppo's SDKs log it -> a row of ``bandit_events``.

    Sortition's ``sortitionOfferedActions`` field (every offered action's attributes), when
    present, is kept in ``offered_actions``; events without it (other SDKs, older clients) are
    stored with NULL there.
    """
    flag = _text(event, "flagKey")
    bandit = _text(event, "banditKey")
    subject = _text(event, "subject")
    action = _text(event, "action")
    probability = _probability(event.get("actionProbability"), "actionProbability")
    gap = _number(event.get("optimalityGap"), "optimalityGap", required=False)
    model_version = _text(event, "modelVersion", required=False)
    ts = to_utc(event.get("timestamp"))
    groups = tuple(
        _json(event.get(name), name)
        for name in ("subjectNumericAttributes", "subjectCategoricalAttributes",
                     "actionNumericAttributes", "actionCategoricalAttributes")
    )
    meta = _json(event.get("metaData"), "metaData")
    offered = _offered_actions(event.get(OFFERED_ACTIONS), action)
    content = (flag, bandit, subject, action, probability, gap, model_version, ts, *groups)
    if offered is not None:  # only then: the derived ids of events without it stay what they were
        content += (offered,)
    event_id = _event_id(event, "bandit", content)
    return (event_id, flag, bandit, subject, action, probability, gap, model_version, ts, *groups, meta,
            offered)


def outcome_row(event: Mapping) -> tuple:
    """An outcome ``{subject, metric, value, timestamp, event_id?}`` -> a row of ``outcomes``."""
    subject = _text(event, "subject")
    metric = _text(event, "metric")
    value = _number(event.get("value"), "value")
    ts = to_utc(event.get("timestamp"))
    event_id = _event_id(event, "outcome", (subject, metric, value, ts))
    return (event_id, subject, metric, value, ts)


ROW_BUILDERS: dict[str, tuple[Table, Callable[[Mapping], tuple]]] = {
    "assignment": (ASSIGNMENTS, assignment_row),
    "bandit": (BANDIT_EVENTS, bandit_row),
    "outcome": (OUTCOMES, outcome_row),
}


def as_event_list(events: Any, kind: str) -> list[Mapping]:
    """Accept one dict, an iterable of dicts, or a pandas DataFrame (one event per row)."""
    if isinstance(events, Mapping):
        return [events]
    if hasattr(events, "to_dict") and hasattr(events, "columns"):
        records = events.to_dict("records")
        # DataFrame cells: NaN/NaT mean "missing" like None.
        return [{k: (None if _is_missing(v) else v) for k, v in r.items()} for r in records]
    if isinstance(events, (str, bytes)) or not isinstance(events, Iterable):
        raise TypeError(f"{kind} events must be a dict, an iterable of dicts or a DataFrame, "
                        f"got {type(events).__name__}")
    return list(events)


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False


def build_rows(events: Iterable[Mapping], kind: str) -> list[tuple]:
    """Validate a batch and return its rows, de-duplicated by event id (first occurrence wins).

    Raises ValueError naming every bad field with the first bad events' positions, and the first
    event id given twice in the batch with different content.
    """
    _table, builder = ROW_BUILDERS[kind]
    rows: dict[str, tuple] = {}
    bad: dict[str, tuple[str, list[int]]] = {}
    conflict = None
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            bad.setdefault("(event)", (f"must be a dict, got {type(event).__name__}", []))[1].append(i)
            continue
        try:
            row = builder(event)
        except FieldError as err:
            bad.setdefault(err.field, (err.problem, []))[1].append(i)
            continue
        previous = rows.setdefault(row[0], row)
        if previous != row and conflict is None:
            conflict = (row[0], i)
    if bad:
        parts = []
        for field, (problem, positions) in bad.items():
            shown = ", ".join(map(str, positions[:_MAX_SHOWN]))
            more = f" and {len(positions) - _MAX_SHOWN} more" if len(positions) > _MAX_SHOWN else ""
            parts.append(f"field {field!r} {problem} (events {shown}{more})")
        raise ValueError(f"{kind} events rejected, nothing was written: " + "; ".join(parts)
                         + ". Fix or drop these events and append the batch again.")
    if conflict is not None:
        raise ValueError(f"{kind} events rejected, nothing was written: event id {conflict[0]!r} is "
                         f"given twice with different content (second at event {conflict[1]}); "
                         "event ids must identify one event.")
    return list(rows.values())
