"""Eppo's Python SDK (Rust core) polls a live ``sortition serve`` and serves exactly what
Sortition's Client serves; its events come back through HttpEventLogger, stored exactly once."""

from __future__ import annotations

import json
import random
import time

import pytest

from sortition.serving import Client, Configuration
from sortition.store import EventStore, HttpEventLogger
from tests.server.conftest import bandit_models, combined_flags

eppo_client = pytest.importorskip("eppo_client")

_GETTERS = {
    "STRING": "get_string_assignment",
    "INTEGER": "get_integer_assignment",
    "NUMERIC": "get_numeric_assignment",
    "BOOLEAN": "get_boolean_assignment",
    "JSON": "get_json_assignment",
}
_DEFAULTS = {"STRING": "default", "INTEGER": -1, "NUMERIC": -1.5, "BOOLEAN": False, "JSON": {"default": True}}
BANDIT_ACTIONS = {
    "nike": {"brand_affinity": 1.2, "loyalty_tier": "gold"},
    "adidas": {"brand_affinity": 0.3},
    "reebok": {},
    "puma": {"loyalty_tier": "silver", "discount": 0.1},
}


class EppoHttpLogger(HttpEventLogger, eppo_client.AssignmentLogger):
    """HttpEventLogger as Eppo's Python SDK takes it (its binding wants its own base class)."""


def _subject(rng: random.Random, i: int) -> tuple[str, dict]:
    return f"user-{i}-{rng.randrange(10**9)}", {
        "country": rng.choice(["US", "UK", "Canada", "Mexico", "France"]),
        "age": rng.randint(1, 90),
        "email": rng.choice(["a@example.com", "b@mycompany.com", "c@other.org"]),
        "account_age": rng.random() * 5,
        "gender_identity": rng.choice(["female", "male"]),
        "version": rng.choice(["1.0.0", "1.5.0", "2.3.1", "0.9.9"]),
    }


def _wait(predicate, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_eppo_python_sdk_serves_what_client_serves_and_logs_once(live):
    server, keys = live
    flags = combined_flags()
    ours = Client(Configuration.from_json(flags, bandit_models()))
    logger = EppoHttpLogger(server.url, keys.ingest, batch_size=2000, flush_interval=0.05)
    eppo = eppo_client.init(
        eppo_client.ClientConfig(
            api_key=keys.sdk,
            base_url=server.url + "/api",
            assignment_logger=logger,
            poll_interval_seconds=1,
            poll_jitter_seconds=0,
        )
    )
    eppo.wait_for_initialization()
    rng = random.Random(7)
    compared = 0
    for flag_key, flag in sorted(flags["flags"].items()):
        kind = flag["variationType"]
        get = getattr(eppo, _GETTERS[kind])
        for i in range(1000):
            key, attrs = _subject(rng, i)
            theirs = get(flag_key, key, attrs, _DEFAULTS[kind])
            mine = ours.get_assignment(flag_key, key, attrs, _DEFAULTS[kind], variation_type=kind)
            assert mine == theirs, (flag_key, key, attrs, mine, theirs)
            compared += 1
    assert compared >= 1000 * len(flags["flags"])
    bandit_flags = [k for k in flags["flags"] if "bandit" in k]
    assert bandit_flags
    actions_logged = 0
    for flag_key in bandit_flags:
        for i in range(1000):
            key, attrs = _subject(rng, i)
            theirs = eppo.get_bandit_action(flag_key, key, attrs, BANDIT_ACTIONS, "default")
            mine = ours.get_bandit_action(flag_key, key, attrs, BANDIT_ACTIONS, "default")
            assert (mine.variation, mine.action) == (theirs.variation, theirs.action), (flag_key, key)
            actions_logged += theirs.action is not None

    # every event the SDK logged reaches the store, exactly once
    assert logger.flush(60), logger
    assert logger.dropped == 0 and not logger.rejected, (logger.drop_reasons, list(logger.rejected)[:3])
    logged = logger.sent
    assert logged > 5000 and actions_logged > 100
    metrics = __import__("httpx").get(server.url + "/metrics").text
    accepted = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("sortition_events_accepted_total")
    )
    assert accepted == logged

    # a new version is served within one poll interval
    changed = json.loads(json.dumps(flags))
    changed["flags"]["kill-switch"]["enabled"] = not flags["flags"]["kill-switch"]["enabled"]
    before = eppo.get_boolean_assignment("kill-switch", "alice", {"country": "US"}, False)
    answer = __import__("httpx").post(
        server.url + "/api/v1/configurations",
        json={"flags": changed, "bandits": bandit_models()},
        headers={"Authorization": f"Bearer {keys.admin}"},
    )
    assert answer.status_code == 200, answer.text
    published = time.monotonic()
    ours_new = Client(Configuration.from_json(changed))
    expected = ours_new.get_assignment("kill-switch", "alice", {"country": "US"}, False)
    assert expected != before
    assert _wait(
        lambda: eppo.get_boolean_assignment("kill-switch", "alice", {"country": "US"}, False) == expected
    )
    assert time.monotonic() - published < 1.0 + 0.2 + 1.0  # poll interval + server refresh + slack
    logger.close()
    assert logger.dropped == 0 and logger.sent >= logged
    logged = logger.sent
    server.kill()
    with EventStore(server.location) as store:
        counts = store.counts()
        ids = set(store.assignments()["event_id"]) | set(store.bandit_events()["event_id"])
    assert counts["assignment"] + counts["bandit"] == logged == len(ids)
