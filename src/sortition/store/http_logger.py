"""``HttpEventLogger``: the services' side of ingestion, posting events to ``sortition serve``.

It keeps Eppo's logger protocol (``log_assignment(event)``, ``log_bandit_action(event)``), so it is
the assignment logger of Sortition's ``Client`` as it is; for Eppo's Python SDK, whose binding wants
a subclass of its own class, mix it in: ``class Logger(HttpEventLogger, eppo_client.AssignmentLogger)``.

Delivery. Each event gets an ``eventId`` when it is logged, so a batch sent again after a timeout
or a server crash is stored once (the server is idempotent by event id). A background thread sends
batches of up to ``batch_size`` events as one JSON array; a 2xx means the server has committed them.
Connection errors, 429 and 5xx answers are retried with exponential backoff and full jitter (and the
server's ``Retry-After``); other 4xx answers (a bad or revoked key, an oversized request) are not
retried: the batch is dropped and the reason kept. Memory is bounded: past ``max_pending`` queued
events a new event is dropped, counted in ``dropped`` and warned about (never silently).
Logging never blocks or raises at request time. ``close()`` (also run at interpreter exit) sends
what is queued, for up to ``close_timeout`` seconds.
"""

from __future__ import annotations

import atexit
import collections
import datetime as dt
import json
import logging
import random
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("sortition.store.http_logger")

EVENTS_PATH = "/api/v1/events"


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


class HttpEventLogger:
    """Batching, retrying event logger posting to a Sortition server.

    Args:
        url: the server's base URL (``http://host:8000``) or the full events URL.
        key: an API key with the ``ingest`` (or ``admin``) role.
        batch_size: most events per request.
        flush_interval: seconds a partial batch waits before it is sent.
        max_pending: most events held in memory (queued and in flight); past it new events are dropped.
        timeout: seconds per HTTP request.
        backoff: (first, most) seconds between retries; each wait is uniform in [0, min(most, first * 2**n)].
        close_timeout: seconds ``close()`` keeps trying to deliver what is queued.
        transport: an ``httpx`` transport (tests).
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_pending: int = 100_000,
        timeout: float = 10.0,
        backoff: tuple[float, float] = (0.05, 5.0),
        close_timeout: float = 10.0,
        transport: Any = None,
    ):
        import httpx

        for name, value in (("batch_size", batch_size), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not key or not isinstance(key, str):
            raise ValueError(
                "key must be an API key with the ingest role (sortition keys create --role ingest)"
            )
        url = url.rstrip("/")
        self.url = url if url.endswith(EVENTS_PATH) else url + EVENTS_PATH
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.max_pending = max_pending
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.close_timeout = float(close_timeout)
        self.sent = 0  # events the server acknowledged (stored, or duplicates of stored ones)
        self.dropped = 0  # events given up on (memory bound or a non-retryable answer)
        self.drop_reasons: collections.Counter[str] = collections.Counter()
        self.rejected: collections.deque[tuple[dict, str]] = collections.deque(maxlen=1000)
        self.retries = 0
        self.last_error: str | None = None
        self._http = httpx.Client(
            timeout=timeout, transport=transport, headers={"Authorization": f"Bearer {key}"}
        )
        self._queue: collections.deque[dict] = collections.deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closed = False
        self._flush_requested = False
        self._thread = threading.Thread(target=self._run, name="sortition-http-logger", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: (lambda s: s is not None and s.close())(ref()))

    # ---- the logger protocol (request time: never blocks, never raises) ---------------------------
    def log_assignment(self, event: Mapping) -> None:
        self._enqueue(event)

    def log_bandit_action(self, event: Mapping) -> None:
        self._enqueue(event)

    def log_outcome(
        self, subject: str, metric: str, value: float, timestamp: Any = None, event_id: str | None = None
    ) -> None:
        """Log an outcome ``{subject, metric, value, timestamp}`` (timestamp: now by default)."""
        stamp = timestamp if timestamp is not None else dt.datetime.now(dt.timezone.utc)
        event = {"subject": subject, "metric": metric, "value": value, "timestamp": stamp}
        if event_id is not None:
            event["eventId"] = event_id
        self._enqueue(event)

    def _enqueue(self, event: Any) -> None:
        try:
            event = dict(event)
        except (TypeError, ValueError):
            self._drop(1, f"not a dict ({type(event).__name__})")
            return
        if event.get("eventId") is None and event.get("event_id") is None:
            event["eventId"] = uuid.uuid4().hex  # retries of this event are deduplicated by the server
        with self._cond:
            if self._closed:
                reason = "logged after close()"
            elif len(self._queue) + self._in_flight >= self.max_pending:
                reason = f"memory bound reached ({self.max_pending} events pending)"
            else:
                self._queue.append(event)
                if len(self._queue) >= self.batch_size:
                    self._cond.notify()
                return
        self._drop(1, reason)

    def _drop(self, n: int, reason: str) -> None:
        first = reason not in self.drop_reasons
        self.dropped += n
        self.drop_reasons[reason] += n
        if first:  # once per reason: a flood of warnings would not help anyone
            warnings.warn(
                f"HttpEventLogger dropped {n} event(s): {reason} (see .dropped, .drop_reasons)",
                RuntimeWarning,
                stacklevel=4,
            )
        logger.warning("HttpEventLogger dropped %d event(s): %s", n, reason)

    @property
    def pending(self) -> int:
        """Events queued or in flight (not yet acknowledged)."""
        with self._cond:
            return len(self._queue) + self._in_flight

    # ---- delivery ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(self.flush_interval)
                if not self._queue:
                    if self._closed:
                        return
                    continue
                if len(self._queue) < self.batch_size and not self._closed and not self._flush_requested:
                    self._cond.wait(self.flush_interval)  # let a partial batch fill up a little
                n = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                self._in_flight = n
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _deliver(self, batch: list[dict]) -> None:
        body = json.dumps(batch, default=_json_default, separators=(",", ":")).encode()
        attempt = 0
        deadline: float | None = None
        while True:
            wait = None
            try:
                response = self._http.post(
                    self.url, content=body, headers={"Content-Type": "application/json"}
                )
            except Exception as err:  # noqa: BLE001 - any transport error is retried
                self.last_error = f"{type(err).__name__}: {err}"
            else:
                if response.is_success:
                    self._record(batch, response)
                    return
                self.last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code != 429 and response.status_code < 500:
                    self._drop(len(batch), f"the server refused the batch ({self.last_error})")
                    return
                wait = _retry_after(response.headers.get("Retry-After"))
            with self._cond:
                closing = self._closed
            if closing:
                deadline = deadline or time.monotonic() + self.close_timeout
                if time.monotonic() >= deadline:
                    self._drop(len(batch), f"undelivered at close ({self.last_error})")
                    return
            attempt += 1
            self.retries += 1
            cap = min(self.backoff[1], self.backoff[0] * 2 ** min(attempt, 30))
            time.sleep(max(wait or 0.0, random.uniform(0, cap)))

    def _record(self, batch: list[dict], response: Any) -> None:
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        rejected = answer.get("rejected") or [] if isinstance(answer, dict) else []
        for item in rejected:
            index, reason = item.get("index"), item.get("reason")
            if isinstance(index, int) and 0 <= index < len(batch):
                self.rejected.append((batch[index], str(reason)))
        if rejected:
            warnings.warn(
                f"the server rejected {len(rejected)} event(s), e.g. {rejected[0].get('reason')!r} "
                "(see .rejected)",
                RuntimeWarning,
                stacklevel=2,
            )
        self.sent += len(batch) - len(rejected)

    # ---- flush and close ---------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send everything queued now and wait until it is acknowledged; False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            try:
                while self._queue or self._in_flight:
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left if left is not None else 1.0)
                    self._cond.notify_all()
            finally:
                self._flush_requested = False
        return True

    def close(self) -> None:
        """Deliver what is queued (for up to ``close_timeout`` s), then stop. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(self.close_timeout + 5.0)
        self._http.close()
        left = self.pending
        if left:
            self._drop(left, "undelivered at close")

    def __enter__(self) -> HttpEventLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"HttpEventLogger({self.url!r}, sent={self.sent}, pending={self.pending}, dropped={self.dropped})"
        )


def _retry_after(value: str | None) -> float | None:
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None
