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
# The store's INTEGER columns (round) are 32-bit in both engines.
_INT32 = 2**31 - 1
# Timestamps both engines store alike (Python's datetime range fits DuckDB's and PostgreSQL's).
_TS_MIN, _TS_MAX = dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30)


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
        try:
            value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise FieldError(field, f"{value!r} seconds since the epoch is out of range") from None
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise FieldError(field, f"is missing or not a timestamp ({type(value).__name__}); give a datetime "
                         "or an RFC 3339 string")
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except (OverflowError, ValueError):
            raise FieldError(field, f"{value.isoformat()!r} is out of range in UTC") from None
    if not _TS_MIN <= value <= _TS_MAX:
        raise FieldError(field, f"{value.isoformat()!r} is out of range (years 1 to 9999)")
    return value


FUTURE_SLACK = dt.timedelta(days=1)  # clock skew a logger may have; beyond it, a wrong clock or unit


def event_time(value: Any) -> dt.datetime:
    """An event's ``timestamp`` (:func:`to_utc`), refused when more than :data:`FUTURE_SLACK` ahead of
    this machine's clock: such an event would count in every attribution window to come."""
    ts = to_utc(value)
    ahead = ts - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if ahead > FUTURE_SLACK:
        days = f"{ahead.days:,} day{'s' * (ahead.days != 1)}"
        raise FieldError("timestamp", f"{ts.isoformat()}Z is {days} in the future (the logger's clock, or a "
                         "time zone taken for UTC?); an event more than a day ahead is refused")
    return ts


def check_text(value: str, field: str) -> str:
    """``value`` if both engines store it unchanged, else FieldError.

    PostgreSQL refuses NUL characters in text and lone surrogates are not UTF-8: refusing them
    here (for DuckDB too) keeps one bad field from failing a whole batch at commit time, and keeps
    what the two engines accept the same.
    """
    if "\x00" in value:
        raise FieldError(field, f"contains a NUL character (\\x00) at position {value.index(chr(0))}: "
                         "text fields cannot hold NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise FieldError(field, f"contains a lone surrogate {value[err.start]!r} at position {err.start}: "
                         "text must be valid Unicode") from None
    return value


def _text(event: Mapping, field: str, required: bool = True) -> str | None:
    value = event.get(field)
    if value is None:
        if required:
            raise FieldError(field, "is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(field, f"must be a string, got {type(value).__name__} {_shown(value)}")
    if isinstance(value, int):
        if abs(value) >= 10**100:
            raise FieldError(field, f"is an integer of {len(str(abs(value)))} digits; give a string")
        value = str(value)
    if required and value == "":
        raise FieldError(field, "is empty")
    return check_text(value, field)


def _shown(value: Any) -> str:
    """A short, printable form of a user's value for messages (never raises)."""
    try:
        text = ascii(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, field: str, required: bool = True) -> float | None:
    if value is None:
        if required:
            raise FieldError(field, "is missing")
        return None
    try:
        number = float(value)  # Eppo's extraLogging values are strings ("0.25")
    except OverflowError:
        raise FieldError(field, "is an integer too large for a float") from None
    except (TypeError, ValueError):
        raise FieldError(field, f"must be a number, got {_shown(value)}") from None
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
    except (TypeError, ValueError, RecursionError) as err:
        raise FieldError(field, f"is not JSON-serializable ({_shown(str(err))})") from None


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
                raise FieldError(key, f"must be a non-empty string, got {_shown(given)}")
            return check_text(given, key)
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
    ts = event_time(event.get("timestamp"))
    nested = event.get("extraLogging") or {}
    if not isinstance(nested, Mapping):
        raise FieldError("extraLogging", f"must be a dict, got {type(nested).__name__}")
    extra = {k: v for k, v in event.items() if k not in _ASSIGNMENT_FIELDS}
    extra.update(nested)
    cell = extra.get(CELL_KEY)
    cell = None if cell is None else check_text(str(cell), CELL_KEY)
    propensity = _probability(extra.get(PROPENSITY_KEY), PROPENSITY_KEY, required=False)
    round_number = _number(extra.get(ROUND_KEY), ROUND_KEY, required=False)
    if round_number is not None:
        if round_number != int(round_number):
            raise FieldError(ROUND_KEY, f"must be a whole number, got {extra.get(ROUND_KEY)!r}")
        round_number = int(round_number)
        if abs(round_number) > _INT32:
            raise FieldError(ROUND_KEY, f"{round_number} is out of range (a round number below 2**31)")
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
                         f"categoricalAttributes}}}}, got {_shown(value)}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, groups in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int)) or key == "":
            raise FieldError(field, f"action keys must be non-empty strings, got {_shown(key)}")
        key = check_text(str(key), field)  # as the action field itself is stored
        groups = {} if groups is None else groups
        if not isinstance(groups, Mapping) or set(groups) - set(_GROUPS):
            raise FieldError(field, f"action {key!r} must map to a dict with keys {list(_GROUPS)}, "
                             f"got {_shown(groups)}")
        numeric = groups.get("numericAttributes") or {}
        categorical = groups.get("categoricalAttributes") or {}
        if not isinstance(numeric, Mapping) or not isinstance(categorical, Mapping):
            raise FieldError(field, f"action {key!r}: attribute groups must be dicts")
        for name, x in numeric.items():
            if isinstance(x, bool) or not isinstance(x, numbers.Real) or not _finite(x):
                raise FieldError(field, f"action {key!r}: numeric attribute {name!r} is {_shown(x)}, "
                                 "not a finite number")
        out[key] = {"numericAttributes": dict(numeric), "categoricalAttributes": dict(categorical)}
    if action not in out:
        raise FieldError(field, f"does not contain the chosen action {action!r} (offered: {sorted(out)[:5]})")
    return json.dumps(out, sort_keys=True, separators=(",", ":"), default=_json_default)


def _finite(x: numbers.Real) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float range
        return False


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
    ts = event_time(event.get("timestamp"))
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
    ts = event_time(event.get("timestamp"))
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


def build_rows(events: Iterable[Mapping], kind: str, set_aside: list[tuple[str, Any, str]] | None = None
               ) -> list[tuple]:
    """Validate a batch and return its rows, de-duplicated by event id (first occurrence wins).

    Raises ValueError naming every bad field with the first bad events' positions, and the first
    event id given twice in the batch with different content. With ``set_aside`` (a list), bad events
    are appended to it as ``(kind, event, reason)`` instead, and the good rows are returned.
    """
    _table, builder = ROW_BUILDERS[kind]
    rows: dict[str, tuple] = {}
    bad: dict[str, tuple[str, list[int]]] = {}
    conflict = None
    for i, event in enumerate(events):
        try:
            if not isinstance(event, Mapping):
                raise FieldError("(event)", f"must be a dict, got {type(event).__name__}")
            row = builder(event)
        except FieldError as err:
            if set_aside is not None:
                set_aside.append((kind, event, f"field {err.field!r} {err.problem}"))
            else:
                bad.setdefault(err.field, (err.problem, []))[1].append(i)
            continue
        except Exception as err:  # noqa: BLE001 - a hostile mapping: set aside, or raised below
            if set_aside is None:
                raise
            set_aside.append((kind, event, f"could not be read ({type(err).__name__}: {_shown(str(err))})"))
            continue
        previous = rows.setdefault(row[0], row)
        if previous != row:
            if set_aside is not None:
                set_aside.append((kind, event, f"event id {row[0]!r} is given twice with different content"))
            elif conflict is None:
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


# --- dead letters ---------------------------------------------------------------------------------
_MAX_DEAD_TEXT = 65_536


def _safe_text(text: str) -> str:
    """``text`` with NUL and lone surrogates escaped, so every engine stores it."""
    try:
        return check_text(text, "")
    except FieldError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def event_text(event: Any) -> str:
    """An event as JSON text that every engine stores (non-ASCII escaped; at most 64 KiB).

    Never raises: what JSON cannot hold is written as its ``repr``.
    """
    try:
        text = json.dumps(event, default=lambda v: _shown_full(v), ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps({"repr": _shown_full(event)}, ensure_ascii=True)
    return text if len(text) <= _MAX_DEAD_TEXT else text[:_MAX_DEAD_TEXT - 3] + "..."


def _shown_full(value: Any) -> str:
    try:
        return ascii(value)[:_MAX_DEAD_TEXT]
    except Exception:  # noqa: BLE001 - a hostile __repr__, or one too deep
        return f"<{type(value).__name__}>"


def dead_letter_row(kind: str, event: Any, reason: str, received_at: dt.datetime) -> tuple:
    """A refused event -> a row of ``dead_letters``: (id, kind, reason, event JSON, received_at).

    The id hashes the kind, event and reason, so setting the same event aside twice stores it once.
    """
    text, reason = event_text(event), _safe_text(reason)[:_MAX_DEAD_TEXT]
    event_id = hashlib.sha256(json.dumps([kind, text, reason]).encode()).hexdigest()[:32]
    return (event_id, kind, reason, text, received_at)
