"""Hostile text and a failing disk at the store (issue 13 §1, §3).

Both engines accept and refuse the same events; one bad event is set aside in ``dead_letters`` with the
reason and never blocks its batch; the logger's buffer is bounded and what it drops is counted and
reported; a failing disk is not retried and never becomes request latency.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import contextmanager

import duckdb
import pytest

from sortition.store import EventStore, StoreLogger
from sortition.store import records
from sortition.store.backend import write_with_retry
from store._events import assignment, bandit

HOSTILE = {
    "nul": ({"subject": "evil\x00"}, "subject", "NUL"),
    "lone-surrogate": ({"subject": "evil\ud800"}, "subject", "surrogate"),
    "int-beyond-64-bits": ({"round": 2**70}, "round", "out of range"),
    "int-beyond-float": ({"propensity": 10**400}, "propensity", "too large"),
    "huge-int-subject": ({"subject": 10**200}, "subject", "digits"),
    "timestamp-before-year-1": ({"timestamp": -9e10}, "timestamp", "out of range"),
    "timestamp-overflows-utc": ({"timestamp": "9999-12-31T23:59:00-05:00"}, "timestamp", "out of range"),
    "nul-in-cell": ({"cell": "c\x00"}, "cell", "NUL"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_one_hostile_event_is_set_aside_and_the_rest_are_stored(store, case):
    fields, field, problem = HOSTILE[case]
    logger = StoreLogger(store, buffer_size=100, background=False)
    with pytest.warns(RuntimeWarning, match=field):
        logger.log_assignment(assignment("s-evil") | fields)
    for i in range(499):
        logger.log_assignment(assignment(f"s{i}"))
    logger.close()
    assert store.counts()["assignment"] == 499
    assert logger.stats() == {"pending": 0, "written": 499, "set_aside": 1, "dropped": 0, "failures": 0}
    dead = store.dead_letters()
    assert len(dead) == 1 and dead["kind"].iloc[0] == "assignment"
    assert field in dead["reason"].iloc[0] and problem in dead["reason"].iloc[0]
    json.loads(dead["event"].iloc[0])  # the event itself is kept, as JSON text


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_both_engines_refuse_the_same_events_with_the_field_named(store, case):
    fields, field, problem = HOSTILE[case]
    with pytest.raises(ValueError, match=f"'{field}'.*{problem}"):
        store.append_assignments([assignment("ok"), assignment("s-evil") | fields])
    assert store.counts()["assignment"] == 0  # the default: the whole batch or nothing


def test_bandit_events_with_hostile_text_are_set_aside(store):
    result = store.append(bandit_events=[bandit("b1"), bandit("b2", action="x\x00"),
                                         bandit("b3") | {"actionProbability": 10**400}], invalid="set_aside")
    assert (result["bandit"].inserted, result["bandit"].set_aside, result["bandit"].duplicates) == (1, 2, 0)
    assert sorted(store.dead_letters("bandit")["reason"].str.extract(r"field '(\w+)'")[0]) == [
        "action", "actionProbability"]


def test_a_row_the_engine_refuses_is_set_aside_and_the_rest_stored(store, monkeypatch):
    # Validation switched off: the engine itself refuses the row (a lone surrogate is not UTF-8);
    # the batch is then written row by row and only that row is set aside.
    monkeypatch.setattr(records, "check_text", lambda value, field: value)
    events = [assignment(f"s{i}") for i in range(20)] + [assignment("evil\ud800")]
    result = store.append(assignments=events, invalid="set_aside")
    assert (result["assignment"].inserted, result["assignment"].set_aside) == (20, 1)
    dead = store.dead_letters()
    assert len(dead) == 1 and f"refused by {store.dialect}" in dead["reason"].iloc[0]
    assert store.counts()["assignment"] == 20


def test_setting_aside_is_idempotent_and_older_stores_get_the_table(tmp_path):
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as con:  # a store written before dead_letters existed
        con.execute("CREATE TABLE sortition_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    with EventStore(path) as store:
        for _ in range(2):
            store.append(assignments=[assignment("a"), assignment("b\x00")], invalid="set_aside")
        assert len(store.dead_letters()) == 1 and store.counts()["assignment"] == 1


# ---- bounded buffer, failing disk (§1, §3) -------------------------------------------------------------
_DISK_FULL = "TransactionContext Error: Failed to commit: could not write to file: No space left on device"


def _failing(store: EventStore) -> list[int]:
    """Make every transaction of ``store`` fail at commit as a full disk does; return the attempt counter."""
    attempts = [0]

    class Accepting:  # takes the inserts; the commit is what fails
        def insert_new(self, table, rows):
            return len(rows)

    @contextmanager
    def transaction():
        attempts[0] += 1
        yield Accepting()
        raise duckdb.TransactionException(_DISK_FULL)

    store._backend.transaction = transaction
    return attempts


def test_a_full_disk_is_not_retried(tmp_path):
    with EventStore(str(tmp_path / "e.duckdb")) as store:
        assert not store._backend.is_conflict(duckdb.TransactionException(_DISK_FULL))
        assert store._backend.is_conflict(duckdb.TransactionException(
            'Failed to commit: PRIMARY KEY or UNIQUE constraint violation: duplicate key "x"'))
        attempts = _failing(store)
        t0 = time.perf_counter()
        with pytest.raises(duckdb.TransactionException, match="No space"):
            write_with_retry(store._backend, lambda tx: None)
        assert attempts[0] == 1 and time.perf_counter() - t0 < 1.0  # was 20 attempts, 7 s


def test_a_failing_store_costs_requests_no_latency_and_drops_are_counted(tmp_path, caplog):
    with EventStore(str(tmp_path / "e.duckdb")) as store:
        attempts = _failing(store)
        logger = StoreLogger(store, buffer_size=100, max_pending=1000, flush_interval=0.05)
        events = [assignment(f"s{i}") for i in range(3000)]
        slowest = 0.0
        with caplog.at_level("WARNING", logger="sortition.store"):
            t0 = time.perf_counter()
            for event in events:
                t = time.perf_counter()
                logger.log_assignment(event)
                slowest = max(slowest, time.perf_counter() - t)
            total = time.perf_counter() - t0
            # wait for a failed write that comes after every drop (the writer thread's timing varies
            # with load): its warning reports the full count
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                logger.failures >= 2 and "2000 events dropped" in caplog.text
            ):
                time.sleep(0.01)
        stats = logger.stats()
        # Before: every call after the first full buffer flushed inline, retrying 20 times (~7 s each).
        assert total < 3.0 and slowest < 0.5
        assert stats["pending"] == 1000 and stats["dropped"] == 2000 and stats["failures"] >= 2
        assert attempts[0] == stats["failures"]  # one attempt per write: nothing retried in a loop
        assert "No space left on device" in caplog.text and "2000 events dropped" in caplog.text
        logger.close(flush=False)  # the store stays broken: stop the writer without the final flush


def test_the_background_writer_catches_up_when_the_store_recovers(tmp_path):
    with EventStore(str(tmp_path / "e.duckdb")) as store:
        healthy = store._backend.transaction
        _failing(store)
        logger = StoreLogger(store, buffer_size=50, flush_interval=0.05)
        for i in range(200):
            logger.log_assignment(assignment(f"s{i}"))
        deadline = time.monotonic() + 10
        while logger.failures < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        store._backend.transaction = healthy
        deadline = time.monotonic() + 30
        while store.counts()["assignment"] < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        logger.close()
        assert store.counts()["assignment"] == 200 and logger.stats()["dropped"] == 0
