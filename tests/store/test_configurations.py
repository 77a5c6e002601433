"""Configuration versions: every served configuration can be read back."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest

from sortition.store import EventStore

UFC = Path(__file__).parents[1] / "conformance" / "eppo" / "ufc"


def test_versions_are_numbered_and_read_back(store):
    flags = json.loads((UFC / "flags-v1.json").read_text())
    bandit_flags = (UFC / "bandit-flags-v1.json").read_text()
    models = json.loads((UFC / "bandit-models-v1.json").read_text())
    first = store.save_configuration(flags, created_at="2024-05-01T00:00:00Z")
    second = store.save_configuration(bandit_flags, models)
    assert (first.version, second.version) == (1, 2)
    assert first.created_at == dt.datetime(2024, 5, 1)
    assert store.configuration(1).flags == flags and store.configuration(1).bandits is None
    latest = store.configuration()
    assert latest.version == 2 and latest.flags == json.loads(bandit_flags) and latest.bandits == models
    assert store.configuration_versions() == [1, 2]
    wire = latest.to_wire()
    assert json.loads(wire["config"]["response"]) == latest.flags
    assert json.loads(wire["bandits"]["response"]) == models


def test_saving_a_version_again_is_a_retry_unless_the_content_differs(store):
    store.save_configuration({"flags": {}}, version=7)
    assert store.save_configuration({"flags": {}}, version=7).version == 7
    with pytest.raises(ValueError, match="version 7 already exists with other content"):
        store.save_configuration({"flags": {"f": {}}}, version=7)
    assert store.save_configuration({"flags": {"f": {}}}).version == 8


def test_missing_versions_and_bad_documents_are_reported(store):
    with pytest.raises(LookupError, match="no configuration has been saved"):
        store.configuration()
    store.save_configuration({"flags": {}})
    with pytest.raises(LookupError, match=r"version 3 does not exist \(saved versions: \[1\]\)"):
        store.configuration(3)
    with pytest.raises(ValueError, match="flags is not valid JSON"):
        store.save_configuration("{not json")
    with pytest.raises(TypeError, match="bandits must be a JSON object"):
        store.save_configuration({"flags": {}}, [1, 2])
    with pytest.raises(ValueError, match="UFC flags document with a 'flags' object"):
        store.save_configuration({"version": 1, "config": {"response": "{}"}})
    with pytest.raises(ValueError, match="bandit-models document"):
        store.save_configuration({"flags": {}}, {"flags": {}})
    with pytest.raises(ValueError, match="version must be a positive integer"):
        store.save_configuration({"flags": {}}, version=0)


def test_concurrent_saves_get_distinct_versions(store_url):
    stores = [EventStore(store_url) for _ in range(3)]
    saved: list[int] = []

    def work(k: int):
        for i in range(5):
            saved.append(stores[k].save_configuration({"flags": {}, "writer": k, "i": i}).version)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert sorted(saved) == list(range(1, 16))
        contents = {(c.flags["writer"], c.flags["i"]) for c in map(stores[0].configuration, range(1, 16))}
        assert len(contents) == 15
    finally:
        for s in stores:
            s.close()


def test_flag_keys_lists_flags_with_exposures(store):
    assert store.flag_keys() == []
    base = {"allocation": "a", "experiment": "e", "subjectAttributes": {}, "timestamp": "2024-05-01T00:00:00Z"}
    store.append_assignments([
        {**base, "featureFlag": "zeta", "variation": "on", "subject": "u1"},
        {**base, "featureFlag": "alpha", "variation": "off", "subject": "u2"},
        {**base, "featureFlag": "zeta", "variation": "off", "subject": "u3"},
    ])
    assert store.flag_keys() == ["alpha", "zeta"]
