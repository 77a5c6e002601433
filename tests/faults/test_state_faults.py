"""A damaged or stale state file never runs (issue 13 §5).

The state carries a checksum of its content; a mismatch, a byte flip, an inconsistent count, deep
nesting and a state older than the store are each refused with a message saying what to do, and the
previous good state is kept as ``state.json.prev``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sortition.experiment import SequentialExperiment
from sortition.experiment import persistence
from sortition.workflows.daily import daily_round

from experiment.conftest import draw_round
from faults.test_round_faults import FLAG, METRIC, SCENARIO, _create, _serve


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A state after two rounds (and its .prev after one), as bytes."""
    path = tmp_path_factory.mktemp("state") / "state.json"
    exp = SequentialExperiment(SCENARIO.arms, key="checkout", outcome="continuous", engine="stratified",
                               fit_options={"progress": False, "draws": 50}, seed=3, max_depth=1,
                               tree_options={"n_bootstrap": 2})
    rng = np.random.default_rng(0)
    for r in range(2):
        rows, _ = draw_round(exp.plan_, SCENARIO, 300, rng, r)
        exp.advance(rows)
        exp.save(path)
    return path.read_bytes(), path.with_name("state.json.prev").read_bytes()


def _write(tmp_path, content: bytes):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    return path


def test_the_previous_good_state_is_kept_and_loads(tmp_path, saved):
    current, prev = saved
    assert SequentialExperiment.load(_write(tmp_path, current)).round_ == 2
    assert SequentialExperiment.load(_write(tmp_path, prev)).round_ == 1


def test_an_edited_count_is_refused_by_the_checksum_and_by_the_consistency_checks(tmp_path, saved):
    doc = json.loads(saved[0])
    doc["state"]["data"]["n"] = 5  # the probe's edit: the round then re-read 595 used exposures as new
    path = _write(tmp_path, json.dumps(doc).encode())
    with pytest.raises(ValueError, match=r"fails its checksum.*Restore .*state\.json\.prev"):
        SequentialExperiment.load(path)
    doc["checksum"] = persistence._checksum(doc)  # a consistent forgery: the counts still disagree
    with pytest.raises(ValueError, match="n = 5 rows but column 'subject' has 600 values"):
        SequentialExperiment.load(_write(tmp_path, json.dumps(doc).encode()))
    doc = json.loads(saved[0])
    doc["state"]["results"][1]["n_total"] = 900
    doc["checksum"] = persistence._checksum(doc)
    with pytest.raises(ValueError, match="round 1 says 900 rows in total"):
        SequentialExperiment.load(_write(tmp_path, json.dumps(doc).encode()))
    del doc["checksum"]
    with pytest.raises(ValueError, match="has no checksum"):
        SequentialExperiment.load(_write(tmp_path, json.dumps(doc).encode()))


def test_every_byte_flip_that_changes_the_content_is_refused(tmp_path, saved):
    content = saved[0]
    original = SequentialExperiment.load(_write(tmp_path, content)).to_json()
    positions = np.random.default_rng(1).choice(len(content), size=150, replace=False)
    refused = 0
    for pos in positions:
        for bit in (0x01, 0x20):
            flipped = bytearray(content)
            flipped[pos] ^= bit
            try:
                loaded = SequentialExperiment.load(_write(tmp_path, bytes(flipped)))
            except ValueError:
                refused += 1
                continue
            # only a flip that leaves the content as it was may load, e.g. "\u00e9" -> "\u00E9"
            assert loaded.to_json() == original, f"byte {pos} ^ {bit:#x} was accepted"
    assert refused >= 290


def test_deep_nesting_and_malformed_parts_get_a_clear_error(tmp_path, saved):
    with pytest.raises(ValueError, match="nested too deeply"):
        SequentialExperiment.load(_write(tmp_path, b"[" * 200_000 + b"]" * 200_000))
    doc = json.loads(saved[0])
    doc["settings"]["tree_options"] = {"a": json.loads("[" * 50 + "]" * 50)}
    doc["state"] = {"round": 0}
    doc["checksum"] = persistence._checksum(doc)
    with pytest.raises(ValueError, match="malformed experiment state"):
        SequentialExperiment.load(_write(tmp_path, json.dumps(doc).encode()))


def test_a_state_older_than_the_store_is_refused(tmp_path):
    store_path, state = tmp_path / "events.duckdb", tmp_path / "state.json"
    _create(store_path, state)
    rng = np.random.default_rng(2)
    for r in range(2):
        _serve(store_path, 300, f"r{r}", rng)
        daily_round(store_path, FLAG, METRIC, state=state)
    state.write_bytes(state.with_name("state.json.prev").read_bytes())  # restored from the backup
    before = state.read_bytes()
    with pytest.raises(ValueError, match="serves round 2 .* state .* is at round 1: the state is older"):
        daily_round(store_path, FLAG, METRIC, state=state)
    assert state.read_bytes() == before
