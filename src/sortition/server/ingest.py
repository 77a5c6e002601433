"""Event ingestion: request bodies -> validated rows -> group commit into the store.

A request's rows are validated one by one (``sortition.store.records``, the one validation of
events); bad rows are answered with their index and reason, good rows go to the ``GroupCommitter``.
Its writer thread takes every request waiting, writes their rows in ONE transaction, and only then
answers them: a 2xx means the rows are committed. Appends are idempotent by event id (content-derived
when none is given), so a retried request never stores an event twice. The committer's queue is
bounded in rows: past ``max_pending`` a request is refused (429 with ``Retry-After``), never dropped.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sortition.store.backend import Transaction, write_with_retry
from sortition.store.records import ROW_BUILDERS, FieldError
from sortition.store.schema import EVENT_TABLES
from sortition.store.store import EventStore

logger = logging.getLogger("sortition.server")

MAX_BODY_BYTES = 32 * 1024 * 1024  # after decompression
KINDS = ("assignment", "bandit", "outcome")


class BadRequest(ValueError):
    """The request as a whole is unreadable (not one bad row: those are answered per row)."""


class Overloaded(RuntimeError):
    """The commit queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the ingestion queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo ``Content-Encoding: gzip`` (or a gzip body without the header), bounded in size."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip") or body[:2] == b"\x1f\x8b":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error as err:
            raise BadRequest(f"the body is not valid gzip: {err}") from None
        if len(out) > MAX_BODY_BYTES:
            raise BadRequest(
                f"the body is over {MAX_BODY_BYTES // 2**20} MiB uncompressed; send smaller batches"
            )
        return out
    if encoding not in ("", "identity"):
        raise BadRequest(f"Content-Encoding {content_encoding!r} is not supported; use gzip or none")
    return body


def parse_events(text: bytes) -> list[Any]:
    """A JSON array of events, one JSON object, or NDJSON (one event per line) -> list."""
    stripped = text.strip()
    if not stripped:
        raise BadRequest("the body is empty: send a JSON array of events or NDJSON")
    if stripped[:1] == b"[":
        try:
            events = json.loads(stripped)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadRequest(f"the body is not valid JSON: {err}") from None
        return events
    events = []
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadRequest(
                f"line {number} is not valid JSON ({err}); send a JSON array or NDJSON, one event per line"
            ) from None
    return events


# Fields the JavaScript SDKs add to their events that are neither Eppo's logged fields nor extraLogging.
_SDK_ONLY_FIELDS = ("evaluationDetails", "format", "entityId")


def event_kind(event: Mapping) -> str | None:
    """Which kind an event is, by the fields Eppo's SDKs (and outcomes) always carry. Bandit events
    have ``banditKey`` (Python SDK) or ``bandit`` and ``action`` (JavaScript SDKs)."""
    if "banditKey" in event or ("bandit" in event and "action" in event):
        return "bandit"
    if "featureFlag" in event:
        return "assignment"
    if "metric" in event:
        return "outcome"
    return None


def normalize(event: Mapping, kind: str) -> Mapping:
    """The JavaScript SDKs' spellings -> the Python SDK's (``featureFlag``/``bandit`` of a bandit event
    are ``flagKey``/``banditKey``); their evaluation details and format are not stored."""
    if kind == "outcome" or not any(k in event for k in (*_SDK_ONLY_FIELDS, "bandit")):
        return event
    out = {k: v for k, v in event.items() if k not in _SDK_ONLY_FIELDS}
    if kind == "bandit":
        if "flagKey" not in out and "featureFlag" in out:
            out["flagKey"] = out.pop("featureFlag")
        if "banditKey" not in out and "bandit" in out:
            out["banditKey"] = out.pop("bandit")
    return out


@dataclass
class Validated:
    """One request's rows by kind, and its rejected rows ``{"index", "reason"}``."""

    rows: dict[str, list[tuple]] = field(default_factory=lambda: {k: [] for k in KINDS})
    rejected: list[dict] = field(default_factory=list)
    received: int = 0

    @property
    def accepted(self) -> int:
        return self.received - len(self.rejected)


def validate(events: Any) -> Validated:
    """Validate each event on its own; never raises for a bad row."""
    if isinstance(events, Mapping):
        events = [events]
    if not isinstance(events, list):
        raise BadRequest(f"expected a JSON array of events (or NDJSON), got a JSON {type(events).__name__}")
    out = Validated(received=len(events))
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            out.rejected.append(
                {"index": index, "reason": f"must be a JSON object, got {type(event).__name__}"}
            )
            continue
        kind = event_kind(event)
        if kind is None:
            out.rejected.append(
                {
                    "index": index,
                    "reason": "unknown event kind: an assignment has 'featureFlag', "
                    "a bandit action 'banditKey', an outcome 'metric'",
                }
            )
            continue
        try:
            out.rows[kind].append(ROW_BUILDERS[kind][1](normalize(event, kind)))
        except FieldError as err:
            out.rejected.append(
                {"index": index, "reason": f"{kind} event: field {err.field!r} {err.problem}"}
            )
        except (TypeError, ValueError, OverflowError) as err:  # e.g. a timestamp out of range
            out.rejected.append({"index": index, "reason": f"{kind} event: {err}"})
    return out


@dataclass
class _Request:
    rows: dict[str, list[tuple]]
    n: int
    loop: asyncio.AbstractEventLoop | None = None  # None: nobody waits (offer)
    future: asyncio.Future | None = None


@dataclass
class CommitStats:
    """Running totals of the committer (read by metrics and the status page)."""

    committed: int = 0  # rows received in committed batches
    inserted: int = 0  # rows new to the store
    commits: int = 0
    failures: int = 0

    @property
    def deduplicated(self) -> int:
        return self.committed - self.inserted


class GroupCommitter:
    """One writer thread; every waiting request's rows in one transaction per commit.

    Args:
        store: the EventStore written to (this thread is its only event writer in the process).
        max_pending: most rows waiting (queued, not yet committed) before requests get 429.
        max_batch: most rows per transaction.
        linger: seconds the writer waits for more requests to join a commit (bigger transactions cost
            less per row; each waits at most this long more for its answer).
    """

    def __init__(
        self, store: EventStore, max_pending: int = 400_000, max_batch: int = 100_000, linger: float = 0.0
    ):
        self.store = store
        self.linger = linger
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.stats = CommitStats()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Rows waiting to be committed."""
        return self._pending

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sortition-group-commit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then stop the writer thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    async def submit(self, rows: dict[str, list[tuple]], n: int) -> None:
        """Queue ``n`` rows and wait until they are committed (raises Overloaded when full, or the
        store's error when the commit failed: then nothing of the request is acknowledged)."""
        if n == 0:
            return
        with self._lock:
            if self._pending + n > self.max_pending:
                raise Overloaded(retry_after=1)
            self._pending += n
        loop = asyncio.get_running_loop()
        request = _Request(rows, n, loop, loop.create_future())
        self._queue.put(request)
        await asyncio.shield(request.future)

    def offer(self, rows: dict[str, list[tuple]], n: int) -> bool:
        """Queue rows without waiting for their commit (the server's own OFREP exposures); False
        when the queue is full."""
        with self._lock:
            if self._pending + n > self.max_pending:
                return False
            self._pending += n
        self._queue.put(_Request(rows, n))
        return True

    def _take(self) -> list[_Request] | None:
        first = self._queue.get()
        if first is None:
            return None
        group, total = [first], first.n
        linger_until = time.monotonic() + self.linger
        while total < self.max_batch:
            try:
                wait = linger_until - time.monotonic()
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this group
                break
            group.append(item)
            total += item.n
        return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            self._commit(group)

    def _commit(self, group: list[_Request]) -> None:
        merged: dict[str, dict[str, tuple]] = {k: {} for k in KINDS}
        for request in group:
            for kind, rows in request.rows.items():
                target = merged[kind]
                for row in rows:
                    target.setdefault(row[0], row)  # the same event twice in one group: stored once
        n = sum(r.n for r in group)

        def work(tx: Transaction) -> int:
            return sum(
                tx.insert_new(EVENT_TABLES[k], list(rows.values())) for k, rows in merged.items() if rows
            )

        error: BaseException | None = None
        started = time.perf_counter()
        try:
            inserted = write_with_retry(self.store._backend, work)
        except Exception as err:  # noqa: BLE001 - answered to the requests, which may retry
            error = err
            self.stats.failures += 1
            logger.error("group commit of %d rows failed: %s", n, err)
        else:
            self.stats.commits += 1
            self.stats.committed += n
            self.stats.inserted += inserted
            logger.debug(
                "committed %d rows (%d new) in %.1f ms", n, inserted, 1e3 * (time.perf_counter() - started)
            )
        with self._lock:
            self._pending -= n
        for request in group:
            if request.loop is None:
                continue
            try:
                request.loop.call_soon_threadsafe(_settle, request.future, error)
            except RuntimeError:  # the loop is gone (shutdown): the rows are committed all the same
                pass


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)
