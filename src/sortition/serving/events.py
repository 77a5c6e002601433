"""Assignment and bandit events, logger protocols, and the bounded dedup cache."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

import sortition

logger = logging.getLogger("sortition.serving")

META_DATA = {"sdkLanguage": "python", "sdkName": "sortition", "sdkVersion": sortition.__version__}


@runtime_checkable
class AssignmentLogger(Protocol):
    def log_assignment(self, event: dict[str, Any]) -> None: ...


@runtime_checkable
class BanditLogger(Protocol):
    def log_bandit_action(self, event: dict[str, Any]) -> None: ...


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def assignment_event(
    flag_key: str,
    allocation_key: str,
    variation_key: str,
    subject_key: str,
    subject_attributes: dict[str, Any],
    extra_logging: dict[str, str],
) -> dict[str, Any]:
    event: dict[str, Any] = dict(extra_logging)
    event.update(
        featureFlag=flag_key,
        allocation=allocation_key,
        experiment=f"{flag_key}-{allocation_key}",
        variation=variation_key,
        subject=subject_key,
        subjectAttributes=subject_attributes,
        timestamp=now_rfc3339(),
        metaData=dict(META_DATA),
    )
    return event


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
) -> dict[str, Any]:
    return {
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
        "timestamp": now_rfc3339(),
        "metaData": dict(META_DATA),
    }


class DedupCache:
    """Bounded LRU map ``key -> last value logged``: :meth:`should_log` is False for a repeat."""

    def __init__(self, max_size: int = 50_000) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self._items: OrderedDict[Hashable, Hashable] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def should_log(self, key: Hashable, value: Hashable) -> bool:
        with self._lock:
            items = self._items
            if items.get(key) == value and key in items:
                items.move_to_end(key)
                return False
            items[key] = value
            items.move_to_end(key)
            if len(items) > self.max_size:
                items.popitem(last=False)
            return True

    def forget(self, key: Hashable, value: Hashable) -> None:
        """Undo :meth:`should_log` when the logger failed, so the event is tried again later."""
        with self._lock:
            if self._items.get(key) == value:
                del self._items[key]


def safe_log(method: Any, event: dict[str, Any]) -> bool:
    """Call a logger; a failing logger is reported, never raised into the request."""
    try:
        method(event)
        return True
    except Exception:  # noqa: BLE001 - a logger must not break serving
        logger.exception("sortition: logger %r failed", method)
        return False
