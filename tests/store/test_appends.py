"""Appends: transactional, idempotent, and nothing lost or duplicated under concurrency."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

import pytest

from sortition.store import EventStore
from store._events import assignment, bandit, outcome


def test_retried_batches_never_duplicate(store):
    first = store.append_assignments([assignment(f"s{i}", "ab"[i % 2], i) for i in range(50)])
    again = store.append_assignments([assignment(f"s{i}", "ab"[i % 2], i) for i in range(60)])
    assert (first.inserted, first.duplicates) == (50, 0)
    assert (again.inserted, again.duplicates) == (10, 50)
    assert store.counts()["assignment"] == 60
    # Repeats inside one batch are stored once; given ids are kept as given.
    result = store.append_outcomes([outcome("s1", event_id="o-1"), outcome("s1", event_id="o-1"), outcome("s2")])
    assert (result.received, result.inserted) == (3, 2)
    ids = sorted(store.outcomes()["event_id"], key=len)
    assert ids[0] == "o-1" and len(ids[1]) == 32


def test_events_are_stored_faithfully(store):
    store.append_assignments([assignment("s1", "treat", 2.0, cell="optimized", propensity="0.4", round="2")])
    store.append_bandit_events([bandit("s1", "banner-2", 3.0, probability=0.25)])
    row = store.assignments().iloc[0]
    assert (row["flag_key"], row["allocation"], row["experiment"], row["variation"], row["subject"]) == (
        "flag", "seg-1", "flag-seg-1", "treat", "s1")
    assert (row["cell"], row["propensity"], row["round"]) == ("optimized", 0.4, 2)
    assert str(row["timestamp"]) == "2024-05-01 12:02:00"
    assert row["subject_attributes"] == '{"age":30,"country":"US"}'
    assert row["meta_data"] == '{"sdkName":"sortition","sdkVersion":"0.1.0"}'
    b = store.bandit_events().iloc[0]
    assert (b["bandit_key"], b["action"], b["action_probability"], b["model_version"]) == ("banner", "banner-2", 0.25, "v1")
    assert b["action_categorical_attributes"] == '{"brand":"acme"}'


def test_a_failure_inside_the_transaction_rolls_the_whole_batch_back(store, monkeypatch):
    store.append_assignments([assignment("before")])

    class Boom(RuntimeError):
        pass

    def failing_insert(original):
        def insert(self, table, rows):
            if table.name == "outcomes":
                raise Boom("disk full")
            return original(self, table, rows)
        return insert

    tx_type = type(_any_transaction(store))
    monkeypatch.setattr(tx_type, "insert_new", failing_insert(tx_type.insert_new))
    with pytest.raises(Boom):
        store.append(assignments=[assignment(f"s{i}") for i in range(5)], outcomes=[outcome("s1")])
    monkeypatch.undo()
    assert store.counts()["assignment"] == 1 and store.counts()["outcome"] == 0
    # The store is usable afterwards and the same batch now goes in whole.
    result = store.append(assignments=[assignment(f"s{i}") for i in range(5)], outcomes=[outcome("s1")])
    assert result["assignment"].inserted == 5 and result["outcome"].inserted == 1


def _any_transaction(store):
    with store._backend.transaction() as tx:
        return tx


def test_threads_lose_and_duplicate_nothing(store_url):
    # Eight threads, two per store object, each appending overlapping batches (every event is
    # sent by two threads): all 800 distinct events arrive exactly once.
    stores = [EventStore(store_url) for _ in range(4)]
    errors = []

    def work(k: int):
        try:
            s = stores[k % 4]
            base = (k // 2) * 200  # threads 2j and 2j+1 send the same 200 events
            for start in range(0, 200, 25):
                s.append_outcomes([outcome(f"u{base + i}", i, i) for i in range(start, start + 25)])
                s.append_assignments([assignment(f"u{base + i}", minutes=i) for i in range(start, start + 25)])
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors
        counts = stores[0].counts()
        assert counts["outcome"] == 800 and counts["assignment"] == 800
        assert stores[0].outcomes()["subject"].nunique() == 800
    finally:
        for s in stores:
            s.close()


def _process_writer(url: str, worker: int, shared: bool) -> None:
    with EventStore(url, shared=shared, lock_timeout=30) as s:
        for start in range(0, 60, 10):
            # Workers overlap pairwise, so every event is also written by another process.
            s.append_outcomes([outcome(f"p{(worker // 2) * 60 + i}", 1.0, i) for i in range(start, start + 10)])


def test_processes_lose_and_duplicate_nothing(store_url):
    ctx = mp.get_context("spawn")
    shared = not store_url.startswith("postgresql")
    EventStore(store_url).close()  # create the schema first
    procs = [ctx.Process(target=_process_writer, args=(store_url, w, shared)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with EventStore(store_url) as s:
        frame = s.outcomes()
    assert len(frame) == 120 and frame["subject"].nunique() == 120


def test_a_held_duckdb_file_gives_a_clear_error_in_another_process(tmp_path):
    path = str(tmp_path / "held.duckdb")
    with EventStore(path) as s:
        s.append_outcomes([outcome("a")])
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            message = pool.apply(_open_and_report, (path,))
    assert f"held by process {os.getpid()} (" in message and "shared=True" in message  # says who holds it


def _open_and_report(path: str) -> str:
    try:
        EventStore(path, lock_timeout=0.2)
    except RuntimeError as err:
        return str(err)
    return "opened"
