"""Loggers that the serving client calls at request time, appending to an ``EventStore``.

They implement the logger protocol of Sortition's ``Client`` and of Eppo's SDKs:
``log_assignment(event: dict)`` and ``log_bandit_action(event: dict)`` (``StoreLogger`` has both,
like Eppo's ``AssignmentLogger``; ``AssignmentLogger`` and ``BanditLogger`` are callables for one
kind).

What is guaranteed (docs/faults.md):
- logging never raises and never waits on the store at request time: an event is validated and put
  in a bounded buffer (microseconds); a background thread writes the buffer in one transaction when
  ``buffer_size`` events are waiting and every ``flush_interval`` seconds;
- an event that fails validation is not lost: it is kept in ``rejected`` (the last 1,000, with the
  reason) and written to the store's ``dead_letters`` table with the next batch, which it never
  blocks;
- a failed write keeps the events for the next one (retried with back-off; ``last_error`` says why,
  ``failures`` counts them, each is reported to the ``sortition.store`` logger);
- the buffer holds at most ``max_pending`` events: beyond that new events are dropped, counted in
  ``dropped`` and reported (at most one log record per 10 s), so a store that is down costs memory
  ``max_pending`` events deep and no latency.
``flush()`` writes synchronously and raises, so callers see errors; ``close()`` stops the thread and
flushes what is left (also done at interpreter exit).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

from sortition.store.records import ROW_BUILDERS, FieldError
from sortition.store.store import EventStore

log = logging.getLogger("sortition.store")

_KINDS = ("assignment", "bandit")
_DROP_REPORT_EVERY = 10.0  # seconds between two log records about dropped events
_MAX_BACKOFF = 30.0  # seconds between retries of a failing store
_LIVE: weakref.WeakSet[StoreLogger] = weakref.WeakSet()


class StoreLogger:
    """Buffered assignment and bandit logger writing to ``store`` from a background thread.

    Parameters
    ----------
    store : the event store (it stays open: it belongs to the caller).
    buffer_size : events per write; a full buffer wakes the writer.
    max_pending : the most events held while the store is slow or failing; more are dropped (counted).
    flush_interval : seconds between writes of a partly full buffer (None: only when full).
    background : False writes on the calling thread when the buffer fills (for scripts and tests);
        errors are then kept for the next write, as in the background.
    """

    def __init__(self, store: EventStore, buffer_size: int = 1000, *, max_pending: int = 100_000,
                 flush_interval: float | None = 1.0, background: bool = True):
        for name, value in (("buffer_size", buffer_size), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if max_pending < buffer_size:
            raise ValueError(f"max_pending ({max_pending}) must be at least buffer_size ({buffer_size})")
        if flush_interval is not None and not flush_interval > 0:
            raise ValueError(f"flush_interval must be a positive number of seconds or None, got {flush_interval!r}")
        self.store = store
        self.buffer_size = buffer_size
        self.max_pending = max_pending
        self.flush_interval = flush_interval
        self.background = bool(background)
        self.rejected: deque[tuple[Any, str]] = deque(maxlen=1000)
        self.last_error: BaseException | None = None
        self.dropped = 0  # events not kept because the buffer was full
        self.failures = 0  # failed writes
        self.set_aside = 0  # events written to dead_letters
        self.written = 0  # events stored (new ones)
        self._lock = threading.Lock()  # guards the buffer and the counters
        self._flushing = threading.Lock()  # one write at a time
        self._pending: dict[str, list[Any]] = {kind: [] for kind in _KINDS}
        self._count = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_drop_report = -_DROP_REPORT_EVERY

    @property
    def pending(self) -> int:
        """Events buffered and not yet written."""
        with self._lock:
            return self._count

    def stats(self) -> dict[str, int]:
        """Counters: ``pending``, ``written``, ``set_aside``, ``dropped``, ``failures``."""
        with self._lock:
            return {"pending": self._count, "written": self.written, "set_aside": self.set_aside,
                    "dropped": self.dropped, "failures": self.failures}

    # ---- request time ------------------------------------------------------------------------
    def _log(self, kind: str, event: Any) -> None:
        try:
            if not isinstance(event, Mapping):
                raise FieldError("(event)", f"must be a dict, got {type(event).__name__}")
            event = dict(event)
            ROW_BUILDERS[kind][1](event)  # validate now, so the caller hears of it at once
        except Exception as err:  # noqa: BLE001 - request time never raises
            reason = (f"field {err.field!r} {err.problem}" if isinstance(err, FieldError)
                      else f"could not be read ({type(err).__name__})")
            self.rejected.append((event, reason))
            warnings.warn(f"{kind} event not logged: {reason} (kept in the store's dead_letters)",
                          RuntimeWarning, stacklevel=3)
        # a rejected event still goes in the batch: the store sets it aside in dead_letters
        with self._lock:
            if self._count >= self.max_pending:
                self.dropped += 1
                self._report_drops()
                return
            self._pending[kind].append(event)
            self._count += 1
            full = self._count >= self.buffer_size
        background = self.background and not self._stop.is_set()  # a closed logger writes inline
        if full:
            if background:
                self._ensure_thread()
                self._wake.set()
            else:
                self._flush_quietly()
        elif background and self.flush_interval is not None and self._thread is None:
            self._ensure_thread()

    def _report_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_report >= _DROP_REPORT_EVERY:
            self._last_drop_report = now
            log.error("%r: buffer full (%d events waiting), %d events dropped so far; last write error: %s",
                      self, self._count, self.dropped, self.last_error)

    def log_assignment(self, event: Mapping) -> None:
        self._log("assignment", event)

    def log_bandit_action(self, event: Mapping) -> None:
        self._log("bandit", event)

    # ---- writing -----------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="sortition-store-logger", daemon=True)
            _LIVE.add(self)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._flush_quietly():
                backoff = 0.1
            else:
                self._stop.wait(backoff)  # a failing store is retried, but not in a busy loop
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _flush_quietly(self) -> bool:
        """Write the buffer; on failure keep it, count and log the error. True if it worked."""
        try:
            self.flush()
        except Exception as err:  # noqa: BLE001 - request time never raises; events are kept
            log.warning("%r: writing %d events failed (%d failures, %d events dropped so far), will retry: %s",
                        self, self.pending, self.failures, self.dropped, err)
            return False
        return True

    def flush(self) -> int:
        """Write the buffered events in one transaction; return how many were new.

        Events that fail validation go to the store's ``dead_letters``. On failure the events stay
        buffered (a later flush retries them; appends are idempotent) and the error is raised.
        """
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {kind: [] for kind in _KINDS}
                taken, self._count = self._count, 0
            if not taken:
                return 0
            try:
                results = self.store.append(assignments=batch["assignment"], bandit_events=batch["bandit"],
                                            invalid="set_aside")
            except BaseException as err:
                with self._lock:
                    self.failures += 1
                    self.last_error = err
                    for kind, events in batch.items():
                        self._pending[kind][:0] = events
                    self._count += taken
                    overflow = self._count - self.max_pending
                    if overflow > 0:  # events logged meanwhile beyond the bound: drop the newest
                        for kind in reversed(_KINDS):
                            cut = min(overflow, len(self._pending[kind]))
                            if cut:
                                del self._pending[kind][-cut:]
                                overflow -= cut
                                self._count -= cut
                                self.dropped += cut
                raise
            inserted = sum(r.inserted for r in results.values())
            with self._lock:
                self.last_error = None
                self.written += inserted
                self.set_aside += sum(r.set_aside for r in results.values())
            return inserted

    def close(self, flush: bool = True) -> None:
        """Stop the background thread and flush what is left (the store stays open).

        ``flush=False`` stops without writing (the events still buffered are discarded)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        _LIVE.discard(self)
        if flush:
            self.flush()

    def __enter__(self) -> StoreLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"


class AssignmentLogger(StoreLogger):
    """A callable assignment logger: ``logger(event)`` is ``logger.log_assignment(event)``."""

    def __call__(self, event: Mapping) -> None:
        self.log_assignment(event)


class BanditLogger(StoreLogger):
    """A callable bandit logger: ``logger(event)`` is ``logger.log_bandit_action(event)``."""

    def __call__(self, event: Mapping) -> None:
        self.log_bandit_action(event)


@atexit.register
def _flush_at_exit() -> None:
    for logger in list(_LIVE):
        try:
            logger.close()
        except Exception as err:  # noqa: BLE001 - at exit, report and go on
            log.error("%r: events not written at exit (%d pending): %s", logger, logger.pending, err)
