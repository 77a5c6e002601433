"""Loggers: buffered appends behind the serving client's logger protocol; never raising at request time."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from sortition.store import AssignmentLogger, BanditLogger, EventStore, StoreLogger
from store._events import assignment, bandit

UFC = Path(__file__).parents[1] / "conformance" / "eppo" / "ufc"


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the background writer did not write in time"
        time.sleep(0.01)


def test_events_wait_in_the_buffer_until_flush_or_a_full_buffer(store):
    logger = AssignmentLogger(store, buffer_size=5, flush_interval=None)
    for i in range(4):
        logger(assignment(f"s{i}"))
    assert logger.pending == 4 and store.counts()["assignment"] == 0
    logger.log_assignment(assignment("s4"))  # the fifth fills the buffer: the background thread writes it
    _wait_for(lambda: store.counts()["assignment"] == 5)
    assert logger.pending == 0
    bandits = BanditLogger(store, buffer_size=100)
    bandits(bandit("s1"))
    with bandits:
        pass  # leaving the context flushes
    assert store.counts()["bandit"] == 1


def test_a_bad_event_is_set_aside_without_raising(store):
    logger = StoreLogger(store)
    with pytest.warns(RuntimeWarning, match="'subject' is missing"):
        logger.log_assignment({**assignment("x"), "subject": None})
    logger.log_assignment(assignment("ok"))
    assert logger.flush() == 1
    assert len(logger.rejected) == 1 and "subject" in logger.rejected[0][1]


def test_a_failed_flush_keeps_the_events_and_a_later_flush_writes_them_once(store, monkeypatch, caplog):
    logger = StoreLogger(store, buffer_size=3, background=False)
    real_append = store.append
    monkeypatch.setattr(store, "append", lambda **kw: (_ for _ in ()).throw(OSError("connection lost")))
    with caplog.at_level("WARNING", logger="sortition.store"):
        for i in range(3):
            logger.log_assignment(assignment(f"s{i}"))
    assert "will retry" in caplog.text
    assert logger.pending == 3 and isinstance(logger.last_error, OSError) and logger.failures == 1
    with pytest.raises(OSError):
        logger.flush()
    monkeypatch.setattr(store, "append", real_append)
    assert logger.flush() == 3 and logger.pending == 0 and logger.last_error is None
    logger.log_bandit_action(bandit("s0"))
    assert logger.flush() == 1
    assert store.counts() == {"assignment": 3, "bandit": 1, "outcome": 0, "configuration": 0}


def test_threads_logging_at_once_lose_nothing(store):
    logger = StoreLogger(store, buffer_size=7)

    def work(k: int):
        for i in range(50):
            logger.log_assignment(assignment(f"t{k}-{i}"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    logger.flush()
    assert store.counts()["assignment"] == 200


def test_eppo_sdk_events_are_stored_as_logged(tmp_path):
    eppo_client = pytest.importorskip("eppo_client", reason="eppo-server-sdk is not installed")
    store = EventStore(str(tmp_path / "eppo.duckdb"))
    sink = StoreLogger(store)
    logged = []

    class Forward(eppo_client.AssignmentLogger):  # Eppo's SDK wants its own base class
        def log_assignment(self, event):
            logged.append(event)
            sink.log_assignment(event)

        def log_bandit_action(self, event):
            logged.append(event)
            sink.log_bandit_action(event)

    config = eppo_client.Configuration(
        flags_configuration=(UFC / "bandit-flags-v1.json").read_bytes(),
        bandits_configuration=(UFC / "bandit-models-v1.json").read_bytes(),
    )
    client = eppo_client.init(eppo_client.ClientConfig(
        api_key="offline", assignment_logger=Forward(), initial_configuration=config, poll_interval_seconds=None))
    ctx = eppo_client.ContextAttributes
    actions = {"nike": ctx(numeric_attributes={"brand_affinity": 1.0}, categorical_attributes={"tier": "gold"}),
               "adidas": ctx(numeric_attributes={"brand_affinity": 0.5}, categorical_attributes={"tier": "silver"})}
    for i in range(5):
        client.get_bandit_action("banner_bandit_flag", f"user-{i}",
                                 ctx(numeric_attributes={"age": 20.0 + i}, categorical_attributes={"country": "USA"}),
                                 actions, "default")
    assert len(logged) >= 6 and sink.flush() == len(logged) and not sink.rejected
    a = store.assignments()
    b = store.bandit_events()
    assert set(a["flag_key"]) == {"banner_bandit_flag"} and set(a["variation"]) == {"banner_bandit"}
    sent = {e["subject"]: e for e in logged if "featureFlag" in e}
    assert {s: json.loads(t) for s, t in zip(a["subject"], a["subject_attributes"])} == {
        s: e["subjectAttributes"] for s, e in sent.items()}
    chosen = {e["subject"]: (e["action"], e["actionProbability"]) for e in logged if "banditKey" in e}
    assert dict(zip(b["subject"], zip(b["action"], b["action_probability"]))) == chosen
    assert json.loads(b["meta_data"].iloc[0])["sdkName"] == "python"
    store.close()
