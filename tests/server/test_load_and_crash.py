"""Bounded load and crash runs against a live server on 127.0.0.1, on DuckDB and PostgreSQL.

Load: several senders for a few seconds at >= 2,000 events/s in all; every acknowledged event is in
the store exactly once (by id and by count). Crash: SIGKILL in the middle of the load, restart; no
acknowledged event is lost and the HttpEventLogger's retries are deduplicated. SIGTERM: accepted
events are committed before the process exits. (The 60 s run is benchmarks/server.py.)
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx

from sortition.store import EventStore, HttpEventLogger
from tests.server.conftest import LiveServer, prepare

SENDERS = 4
BATCH = 250


def _events(sender: int, n: int) -> list[dict]:
    stamp = "2024-05-01T12:00:00Z"
    out = []
    for _ in range(n):
        eid = uuid.uuid4().hex
        if len(out) % 2:
            out.append(
                {
                    "eventId": eid,
                    "subject": f"s{sender}-{eid[:8]}",
                    "metric": "revenue",
                    "value": 1.0,
                    "timestamp": stamp,
                }
            )
        else:
            out.append(
                {
                    "eventId": eid,
                    "featureFlag": "f",
                    "allocation": "a",
                    "variation": "on",
                    "subject": f"s{sender}-{eid[:8]}",
                    "timestamp": stamp,
                    "subjectAttributes": {"x": 1},
                }
            )
    return out


def _send(url: str, key: str, stop: threading.Event, acked: list[str], sent: list[str], sender: int) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        while not stop.is_set():
            batch = _events(sender, BATCH)
            sent.extend(e["eventId"] for e in batch)
            try:
                answer = http.post(url + "/api/v1/events", json=batch)
            except httpx.HTTPError:
                return  # the server is shutting down
            if answer.status_code == 200:
                assert answer.json()["accepted"] == BATCH
                acked.extend(e["eventId"] for e in batch)


def _stored_ids(location: str) -> tuple[list[str], int]:
    with EventStore(location) as store:
        ids = list(store.assignments()["event_id"]) + list(store.outcomes()["event_id"])
        counts = store.counts()
    return ids, counts["assignment"] + counts["outcome"]


def test_load_every_acknowledged_event_stored_once_sigterm_under_load(any_store):
    keys = prepare(any_store)
    server = LiveServer(any_store).start()
    stop = threading.Event()
    acked: list[list[str]] = [[] for _ in range(SENDERS)]
    sent: list[list[str]] = [[] for _ in range(SENDERS)]
    try:
        started = time.monotonic()
        threads = [
            threading.Thread(target=_send, args=(server.url, keys.ingest, stop, acked[i], sent[i], i))
            for i in range(SENDERS)
        ]
        for t in threads:
            t.start()
        time.sleep(4.0)
        rate = sum(len(a) for a in acked) / (time.monotonic() - started)
        # SIGTERM while the senders are still sending: the requests in flight finish and are committed
        # (uvicorn re-raises the SIGTERM once its graceful shutdown is done)
        assert server.terminate() in (0, -15)
        stop.set()
        for t in threads:
            t.join()
    finally:
        stop.set()
        server.kill()
    assert rate >= 2000, f"{rate:.0f} events/s"
    ids, count = _stored_ids(any_store)
    every_acked = {i for a in acked for i in a}
    assert count == len(ids) == len(set(ids))  # each stored once
    assert every_acked <= set(ids) <= {i for s in sent for i in s}  # nothing acknowledged is missing


def test_sigkill_mid_load_loses_no_acknowledged_event(any_store):
    keys = prepare(any_store)
    server = LiveServer(any_store).start()
    loggers = [
        HttpEventLogger(
            server.url,
            keys.ingest,
            batch_size=200,
            flush_interval=0.02,
            backoff=(0.05, 0.5),
            close_timeout=60,
        )
        for _ in range(2)
    ]
    logged: list[list[str]] = [[], []]
    stop = threading.Event()

    def produce(i: int) -> None:
        while not stop.is_set():
            for event in _events(i, 100):
                loggers[i].log_assignment(event) if "featureFlag" in event else loggers[i]._enqueue(event)
                logged[i].append(event["eventId"])
            time.sleep(0.02)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        acked_before = sum(lg.sent for lg in loggers)
        server.kill()  # SIGKILL: batches in flight are not acknowledged, and will be retried
        time.sleep(0.5)
        server = LiveServer(any_store, port=server.port).start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        for lg in loggers:
            assert lg.flush(60), lg
    finally:
        stop.set()
        for lg in loggers:
            lg.close()
        server.kill()
    assert acked_before > 0
    assert all(lg.dropped == 0 for lg in loggers), [lg.drop_reasons for lg in loggers]
    assert sum(lg.retries for lg in loggers) > 0  # the crash was felt, and retried
    ids, count = _stored_ids(any_store)
    every = [i for a in logged for i in a]
    assert count == len(ids) == len(set(every)) == len(every)
    assert set(ids) == set(every)
