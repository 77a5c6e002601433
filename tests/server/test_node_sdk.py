"""Eppo's Node SDK (@eppo/node-server-sdk, installed from npm into tests/node) polls a live
``sortition serve`` and serves exactly what Sortition's Client serves; its events, logged through
the documented Node logger (tests/node/sortition-logger.mjs), are stored exactly once.
Skipped, with the reason, when node/npm or the npm registry cannot be had."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from sortition.serving import Client, Configuration
from sortition.store import EventStore
from tests.server.conftest import bandit_models, combined_flags
from tests.server.test_eppo_python import _DEFAULTS, BANDIT_ACTIONS, _subject

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node or npm is not installed: Eppo's Node SDK cannot be run")
    if not (NODE_DIR / "node_modules" / "@eppo" / "node-server-sdk").exists():
        try:
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--silent"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm install of @eppo/node-server-sdk timed out (is the npm registry reachable?)")
        if done.returncode != 0:
            pytest.skip(f"npm install of @eppo/node-server-sdk failed: {done.stderr.strip()[-300:]}")
    return NODE_DIR


def test_node_sdk_serves_what_client_serves_and_logs_once(node_sdk, live):
    server, keys = live
    flags = combined_flags()
    ours = Client(Configuration.from_json(flags, bandit_models()))
    rng = random.Random(21)
    cases, expected = [], []
    for flag_key, flag in sorted(flags["flags"].items()):
        kind = flag["variationType"]
        for i in range(1000):
            key, attrs = _subject(rng, i)
            cases.append(
                {
                    "flag": flag_key,
                    "type": kind,
                    "subject": key,
                    "attributes": attrs,
                    "default": _DEFAULTS[kind],
                }
            )
            expected.append(ours.get_assignment(flag_key, key, attrs, _DEFAULTS[kind], variation_type=kind))
    bandit_cases, bandit_expected = [], []
    for flag_key in [k for k in flags["flags"] if "bandit" in k]:
        for i in range(1000):
            key, attrs = _subject(rng, i)
            bandit_cases.append(
                {
                    "flag": flag_key,
                    "subject": key,
                    "attributes": attrs,
                    "actions": BANDIT_ACTIONS,
                    "default": "default",
                }
            )
            mine = ours.get_bandit_action(flag_key, key, attrs, BANDIT_ACTIONS, "default")
            bandit_expected.append([mine.variation, mine.action])
    job = {
        "baseUrl": server.url + "/api",
        "apiKey": keys.sdk,
        "serverUrl": server.url,
        "ingestKey": keys.ingest,
        "flags": cases,
        "bandits": bandit_cases,
    }
    run = subprocess.run(
        ["node", "check.mjs"],
        cwd=node_sdk,
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("SORTITION-RESULT ")]
    assert lines, run.stdout[-2000:]
    answer = json.loads(lines[-1].split(" ", 1)[1])
    mismatches = [
        (c["flag"], c["subject"], a, e)
        for c, a, e in zip(cases, answer["flags"], expected, strict=True)
        if a != e
    ]
    assert not mismatches, mismatches[:5]
    assert answer["bandits"] == bandit_expected
    assert sum(1 for _, action in answer["bandits"] if action) > 100
    stats = answer["stats"]
    assert stats["dropped"] == 0 and stats["rejected"] == 0 and stats["sent"] > 5000
    server.kill()
    with EventStore(server.location) as store:
        counts = store.counts()
        ids = set(store.assignments()["event_id"]) | set(store.bandit_events()["event_id"])
    assert counts["assignment"] + counts["bandit"] == stats["sent"] == len(ids)
