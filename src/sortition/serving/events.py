"""Assignment and bandit events, logger protocols, and the bounded dedup cache."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable
from time import gmtime, strftime, time
from typing import Any, Protocol, runtime_checkable

import sortition
from sortition.serving.attributes import Attributes, numeric_value
from sortition.serving.conditions import js_string

logger = logging.getLogger("sortition.serving")

META_DATA = {"sdkLanguage": "python", "sdkName": "sortition", "sdkVersion": sortition.__version__}

# Sortition's own field of a bandit event (Eppo's event shape has no place for it; consumers
# that read Eppo's fields ignore it): every action offered at the decision, as
# {action_key: {"numericAttributes": {...}, "categoricalAttributes": {...}}}. Evaluating another
# model off-line needs it, since that model's probability of the logged action depends on them all.
OFFERED_ACTIONS = "sortitionOfferedActions"


@runtime_checkable
class AssignmentLogger(Protocol):
    def log_assignment(self, event: dict[str, Any]) -> None: ...


@runtime_checkable
class BanditLogger(Protocol):
    def log_bandit_action(self, event: dict[str, Any]) -> None: ...


_stamp: tuple[int, str] = (-1, "")  # (epoch milliseconds, its RFC 3339 text): one format per ms


def now_rfc3339() -> str:
    """Now in UTC as RFC 3339 with milliseconds (``2026-12-01T19:45:12.123Z``, as JavaScript's
    ``toISOString``); calls within the same millisecond share one formatted string."""
    global _stamp
    ms = int(time() * 1000)
    cached = _stamp
    if cached[0] == ms:
        return cached[1]
    seconds, millis = divmod(ms, 1000)
    text = strftime("%Y-%m-%dT%H:%M:%S", gmtime(seconds)) + f".{millis:03d}Z"
    _stamp = (ms, text)
    return text


def assignment_event(
    flag_key: str,
    allocation_key: str,
    variation_key: str,
    subject_key: str,
    subject_attributes: dict[str, Any],
    extra_logging: dict[str, str],
    timestamp: str | None = None,
) -> dict[str, Any]:
    """An assignment event as Eppo's SDKs log it; ``timestamp`` defaults to now (a batch call
    passes one for all its events)."""
    return {
        **extra_logging,  # first: Eppo's own fields below win over a same-named extra
        "featureFlag": flag_key,
        "allocation": allocation_key,
        "experiment": f"{flag_key}-{allocation_key}",
        "variation": variation_key,
        "subject": subject_key,
        "subjectAttributes": subject_attributes,
        "timestamp": timestamp or now_rfc3339(),
        "metaData": dict(META_DATA),
    }


def bandit_event(
    flag_key: str,
    bandit_key: str,
    subject_key: str,
    action: str,
    action_probability: float,
    optimality_gap: float,
    model_version: str | None,
    subject_numeric: dict[str, float],
    subject_categorical: dict[str, str],
    action_numeric: dict[str, float],
    action_categorical: dict[str, str],
    timestamp: str | None = None,
    offered_actions: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """A bandit action event as Eppo's SDKs log it; ``timestamp`` defaults to now.

    ``offered_actions`` (cleaned attribute groups of every offered action) is added under
    :data:`OFFERED_ACTIONS` when given; Eppo's fields are unchanged.
    """
    event = {
        "flagKey": flag_key,
        "banditKey": bandit_key,
        "subject": subject_key,
        "action": action,
        "actionProbability": action_probability,
        "optimalityGap": optimality_gap,
        "modelVersion": model_version,
        "subjectNumericAttributes": subject_numeric,
        "subjectCategoricalAttributes": subject_categorical,
        "actionNumericAttributes": action_numeric,
        "actionCategoricalAttributes": action_categorical,
        "timestamp": timestamp or now_rfc3339(),
        "metaData": dict(META_DATA),
    }
    if offered_actions is not None:
        event[OFFERED_ACTIONS] = offered_actions
    return event


_FLOAT_INT = 2**1023  # ints below this convert to finite floats


def clean_groups(attributes: Any) -> tuple[dict[str, float], dict[str, str]]:
    """The (numeric, categorical) groups an event logs: finite numbers as floats, strings and
    booleans (and, in an :class:`Attributes` categorical group, anything) as JavaScript strings;
    missing values and names that are not strings left out (JSON keys are strings)."""
    if attributes is None:
        return {}, {}
    if isinstance(attributes, Attributes):
        numeric = {k: float(v) for k, v in attributes.numeric.items()
                   if k.__class__ is str and numeric_value(v) is not None}
        categorical = {k: js_string(v) for k, v in attributes.categorical.items()
                       if k.__class__ is str and v is not None}
        return numeric, categorical
    numeric, categorical = {}, {}
    for k, v in attributes.items():
        if k.__class__ is not str:
            continue
        cls = v.__class__
        if cls is str:
            categorical[k] = v
        elif cls is float:
            if v - v == 0.0:  # finite (inf - inf and nan - nan are nan)
                numeric[k] = v
        elif cls is int and -_FLOAT_INT < v < _FLOAT_INT:
            numeric[k] = float(v)
        elif cls is bool:
            categorical[k] = "true" if v else "false"
        elif v is None:
            continue
        elif isinstance(v, (int, float)):
            if numeric_value(v) is not None:
                numeric[k] = float(v)
        else:
            categorical[k] = js_string(v)
    return numeric, categorical


def offered_groups(actions: Any) -> dict[str, tuple[dict[str, float], dict[str, str]]]:
    """Per offered action, its cleaned (numeric, categorical) groups, as the chosen action's are logged."""
    return {key: clean_groups(attrs) for key, attrs in actions.items()}


def offered_event_field(groups: dict[str, tuple[dict, dict]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The :data:`OFFERED_ACTIONS` value from :func:`offered_groups` (fresh dicts for each event)."""
    return {
        k: {"numericAttributes": dict(n), "categoricalAttributes": dict(c)} for k, (n, c) in groups.items()
    }


class DedupCache:
    """Bounded map ``key -> last value logged``: :meth:`should_log` is False for a repeat.

    Reads take no lock (a dict lookup is atomic); writes do. When full, the oldest entry is
    dropped (insertion order), so memory stays bounded.
    """

    def __init__(self, max_size: int = 50_000) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self._items: OrderedDict[Hashable, Hashable] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def should_log(self, key: Hashable, value: Hashable) -> bool:
        if self._items.get(key, _MISSING) == value:
            return False
        with self._lock:
            items = self._items
            old = items.get(key, _MISSING)
            if old == value:
                return False
            items[key] = value
            if old is not _MISSING:
                items.move_to_end(key)  # a changed entry is the newest (a new one is already last)
            while len(items) > self.max_size:
                # O(1): deleting a plain dict's first key leaves dummies that the next
                # next(iter(...)) scans again, quadratic once the cache is full
                items.popitem(last=False)
            return True

    def forget(self, key: Hashable, value: Hashable) -> None:
        """Undo :meth:`should_log` when the logger failed, so the event is tried again later."""
        with self._lock:
            if self._items.get(key, _MISSING) == value:
                del self._items[key]


_MISSING = object()


_failures = 0


def safe_log(method: Any, event: dict[str, Any]) -> bool:
    """Call a logger; a failing logger is reported (the 1st, 2nd, 4th, 8th... failure, so a
    broken sink cannot flood the log), never raised into the request."""
    global _failures
    try:
        method(event)
        return True
    except Exception:  # noqa: BLE001 - a logger must not break serving
        _failures += 1
        if _failures & (_failures - 1) == 0:
            logger.exception("sortition: logger %r failed (%d failures so far)", method, _failures)
        return False
