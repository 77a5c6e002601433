"""Loggers that the serving client calls at request time, appending to an ``EventStore``.

They implement the logger protocol of Sortition's ``Client`` and of Eppo's SDKs:
``log_assignment(event: dict)`` and ``log_bandit_action(event: dict)`` (``StoreLogger`` has both,
like Eppo's ``AssignmentLogger``; ``AssignmentLogger`` and ``BanditLogger`` are callables for one
kind). Events are buffered and written in one transaction per ``flush()`` (and automatically when
``buffer_size`` events are waiting). Logging never raises at request time: an event that fails
validation is set aside in ``rejected`` (with the reason), and a failed automatic flush keeps the
events for the next one (``last_error`` says why). ``flush()`` itself raises, so callers see errors.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from typing import Any

from sortition.store.records import ROW_BUILDERS, FieldError
from sortition.store.store import EventStore


class StoreLogger:
    """Buffered assignment and bandit logger writing to ``store``."""

    def __init__(self, store: EventStore, buffer_size: int = 1000):
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive integer, got {buffer_size!r}")
        self.store = store
        self.buffer_size = buffer_size
        self.rejected: list[tuple[dict, str]] = []
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, list[dict]] = {"assignment": [], "bandit": []}

    @property
    def pending(self) -> int:
        """Events buffered and not yet written."""
        with self._lock:
            return sum(len(v) for v in self._pending.values())

    def _log(self, kind: str, event: Any) -> None:
        try:
            if not isinstance(event, Mapping):
                raise FieldError("(event)", f"must be a dict, got {type(event).__name__}")
            event = dict(event)
            ROW_BUILDERS[kind][1](event)  # validate now, so one bad event cannot sink a batch
        except FieldError as err:
            reason = f"field {err.field!r} {err.problem}"
            self.rejected.append((event, reason))
            warnings.warn(f"{kind} event not logged: {reason}", RuntimeWarning, stacklevel=3)
            return
        with self._lock:
            self._pending[kind].append(event)
            full = sum(len(v) for v in self._pending.values()) >= self.buffer_size
        if full:
            try:
                self.flush()
            except Exception as err:  # noqa: BLE001 - request time never raises; events are kept
                self.last_error = err
                warnings.warn(f"flushing events to {self.store!r} failed, will retry: {err}",
                              RuntimeWarning, stacklevel=3)

    def log_assignment(self, event: Mapping) -> None:
        self._log("assignment", event)

    def log_bandit_action(self, event: Mapping) -> None:
        self._log("bandit", event)

    def flush(self) -> int:
        """Write the buffered events in one transaction; return how many were new.

        On failure the events stay buffered (a later flush retries them; appends are idempotent)
        and the error is raised.
        """
        with self._lock:
            batch = self._pending
            self._pending = {"assignment": [], "bandit": []}
        if not any(batch.values()):
            return 0
        try:
            results = self.store.append(assignments=batch["assignment"], bandit_events=batch["bandit"])
        except BaseException:
            with self._lock:
                for kind, events in batch.items():
                    self._pending[kind][:0] = events
            raise
        self.last_error = None
        return sum(r.inserted for r in results.values())

    def close(self) -> None:
        """Flush what is left (the store stays open: it belongs to the caller)."""
        self.flush()

    def __enter__(self) -> StoreLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AssignmentLogger(StoreLogger):
    """A callable assignment logger: ``logger(event)`` is ``logger.log_assignment(event)``."""

    def __call__(self, event: Mapping) -> None:
        self.log_assignment(event)


class BanditLogger(StoreLogger):
    """A callable bandit logger: ``logger(event)`` is ``logger.log_bandit_action(event)``."""

    def __call__(self, event: Mapping) -> None:
        self.log_bandit_action(event)
