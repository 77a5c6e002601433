"""Issue 13 §7: every malformed configuration raises ConfigurationError (a ValueError) naming
the JSON path; strict types; size and depth limits; no half-built Configuration."""

import copy
import json
import random
from pathlib import Path

import logging

import pytest

from sortition.serving import Client, Configuration
from sortition.serving import validation
from sortition.serving.obfuscation import obfuscate_flags
from sortition.serving.validation import ConfigurationError

UFC = Path(__file__).resolve().parents[1] / "conformance" / "eppo" / "ufc"
FLAGS = json.loads((UFC / "flags-v1.json").read_text())
BANDIT_FLAGS = json.loads((UFC / "bandit-flags-v1.json").read_text())
MODELS = json.loads((UFC / "bandit-models-v1.json").read_text())


@pytest.fixture(autouse=True)
def _quiet_serving_logs(caplog):
    caplog.set_level(logging.CRITICAL, logger="sortition.serving")


def _flag(**overrides):
    flag = {
        "key": "f", "enabled": True, "variationType": "STRING", "totalShards": 10000,
        "variations": {"on": {"key": "on", "value": "on"}},
        "allocations": [{"key": "a", "rules": [], "doLog": True,
                         "splits": [{"variationKey": "on", "shards": [{"salt": "s", "ranges": [
                             {"start": 0, "end": 10000}]}]}]}],
    }
    flag.update(overrides)
    return {"format": "SERVER", "flags": {"f": flag}}


def test_string_enabled_is_refused_not_read_as_true():
    with pytest.raises(ConfigurationError, match=r"flags\.f\.enabled: expected true or false, got 'false'") as info:
        Configuration.from_json(_flag(enabled="false"))
    assert info.value.path == "flags.f.enabled"
    assert isinstance(info.value, ValueError)
    doc = _flag()
    doc["flags"]["f"]["allocations"][0]["doLog"] = "no"
    with pytest.raises(ConfigurationError, match=r"allocations\[0\]\.doLog: expected true or false"):
        Configuration.from_json(doc)


def test_a_configuration_built_directly_must_hold_compiled_flags():
    with pytest.raises(ConfigurationError, match=r"flags\.f: expected a compiled Flag .*'garbage'"):
        Configuration(flags={"f": "garbage"})
    with pytest.raises(ConfigurationError, match=r"bandits\.b: expected a BanditModel"):
        Configuration(flags={}, bandits={"b": {"gamma": 1}})
    with pytest.raises(ConfigurationError, match="flags: expected an object"):
        Configuration(flags=["f"])
    good = Configuration.from_json(_flag())
    rebuilt = Configuration(flags=dict(good.flags))  # compiled parts: accepted, and frozen
    assert Client(rebuilt).get_assignment("f", "alice", {}, "default") == "on"
    with pytest.raises(TypeError):
        rebuilt.flags["g"] = good.flags["f"]  # type: ignore[index]


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda f: f.update(totalShards=10**400), r"flags\.f\.totalShards: whole number out of range"),
    (lambda f: f["allocations"][0]["splits"][0]["shards"][0]["ranges"][0].update(start=10**30),
     r"ranges\[0\]\.start: whole number out of range"),
    (lambda f: f["allocations"][0].update(startAt=10**400), r"allocations\[0\]\.startAt: expected a string"),
    (lambda f: f["allocations"][0].update(endAt="99999-01-01T00:00:00Z"), r"allocations\[0\]\.endAt: expected an ISO"),
    (lambda f: f["allocations"][0].update(rules=[{"conditions": [
        {"attribute": "n", "operator": "ONE_OF", "value": [10**400]}]}]), None),
    (lambda f: f["allocations"][0].update(rules=[{"conditions": [
        {"attribute": 7, "operator": "GT", "value": 1}]}]), r"conditions\[0\]\.attribute: expected a string"),
    (lambda f: f["allocations"][0].update(rules=[{"conditions": [
        {"attribute": "n", "operator": ["GT"], "value": 1}]}]), r"conditions\[0\]\.operator: unknown operator"),
    (lambda f: f["allocations"][0]["splits"][0].update(extraLogging={"cell": 3}),
     r"splits\[0\]\.extraLogging\.cell: expected a string"),
    (lambda f: f["variations"].update(on={"key": "on", "value": 10**400}), None),
    (lambda f: f.update(variations={"on": {"key": "on", "value": "x" * 10}}, variationType="JSON"), None),
    (lambda f: f.update(variations={1: {"key": "on", "value": "on"}}), r"flags\.f\.variations: keys must be strings"),
])
def test_hostile_fields_raise_configuration_errors(mutate, path):
    doc = _flag()
    mutate(doc["flags"]["f"])
    if path is None:  # accepted: the bad value serves the default with a reason, never raises
        client = Client(Configuration.from_json(doc))
        details = client.get_assignment_details("f", "alice", {"n": 10**400}, "default")
        assert not details.description.startswith("evaluation failed"), details.description
        return
    with pytest.raises(ConfigurationError, match=path):
        Configuration.from_json(doc)


def test_bandit_model_numbers_beyond_float_range():
    models = copy.deepcopy(MODELS)
    models["bandits"]["banner_bandit"]["modelData"]["gamma"] = 10**400
    with pytest.raises(ConfigurationError, match=r"bandits\.banner_bandit\.modelData\.gamma: number out of float range"):
        Configuration.from_json(BANDIT_FLAGS, models)
    models = copy.deepcopy(MODELS)
    models["bandits"]["banner_bandit"]["modelVersion"] = {"v": 1}
    with pytest.raises(ConfigurationError, match=r"bandits\.banner_bandit\.modelVersion: expected a string"):
        Configuration.from_json(BANDIT_FLAGS, models)


def test_depth_limit_text_and_dict():
    deep_text = '{"format": "SERVER", "flags": {"f": ' + "[" * 5000 + "]" * 5000 + "}}"
    with pytest.raises(ConfigurationError, match=f"nested deeper than {validation.MAX_DEPTH} levels"):
        Configuration.from_json(deep_text)
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    with pytest.raises(ConfigurationError, match="nested deeper"):
        Configuration.from_json({"format": "SERVER", "flags": {"f": deep}})
    cyclic: dict = {"format": "SERVER", "flags": {}}
    cyclic["flags"]["f"] = cyclic
    with pytest.raises(ConfigurationError, match="nested deeper"):
        Configuration.from_json(cyclic)
    json_value = _flag(variationType="JSON", variations={"on": {"key": "on", "value": "[" * 100 + "]" * 100}})
    with pytest.raises(ConfigurationError, match=r"flags\.f\.variations\.on\.value: nested deeper"):
        Configuration.from_json(json_value)


def test_size_limit(monkeypatch):
    text = (UFC / "flags-v1.json").read_text()
    monkeypatch.setattr(validation, "MAX_DOCUMENT_BYTES", 1000)
    with pytest.raises(ConfigurationError, match=r"flags: document is [\d,]+ bytes; the limit is 1,000"):
        Configuration.from_json(text)


def test_timestamps_without_a_zone_are_utc():
    doc = _flag()
    doc["flags"]["f"]["allocations"][0]["startAt"] = "2020-01-01T00:00:00"
    flag = Configuration.from_json(doc).flags["f"]
    assert flag.allocations[0].start_at == 1577836800.0


# ------------------------------------------------------------------ the mutation fuzz

_GARBAGE = [None, "false", "true", "garbage", "", 10**400, -(10**30), -1, 0, 1.5, float("inf"), float("nan"),
            True, False, [], {}, [None], {"x": None}, "\x00", "\ud800", "__DEEP__", {1: 2}]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _mutate(doc, rng: random.Random):
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            key = path[-1]
            if isinstance(parent, dict) and rng.random() < 0.2:
                parent.pop(key, None)
            else:
                parent[key] = copy.deepcopy(rng.choice(_GARBAGE))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced an ancestor
    return doc


def _deepen(value):
    if value == "__DEEP__":
        nest: list = []
        node = nest
        for _ in range(3000):
            node.append([])
            node = node[0]
        return nest
    if isinstance(value, dict):
        return {k: _deepen(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepen(v) for v in value]
    return value


@pytest.mark.parametrize("base", ["flags", "bandit-flags", "obfuscated"])
def test_mutation_fuzz_raises_only_configuration_errors(base):
    rng = random.Random(13)
    doc = {"flags": FLAGS, "bandit-flags": BANDIT_FLAGS, "obfuscated": obfuscate_flags(FLAGS)}[base]
    accepted = refused = 0
    for i in range(240):
        mutated = _mutate(doc, rng)
        if i % 2:  # as text (the deep sentinel spliced in, since json.dumps itself would recurse)
            data = json.dumps(mutated, allow_nan=True).replace('"__DEEP__"', "[" * 3000 + "]" * 3000)
        else:
            data = _deepen(mutated)
        try:
            cfg = Configuration.from_json(data, MODELS if base == "bandit-flags" else None)
        except ConfigurationError as exc:
            assert exc.path and str(exc).startswith(exc.path), str(exc)
            refused += 1
            continue
        accepted += 1
        client = Client(cfg)
        for key in list((BANDIT_FLAGS if base == "bandit-flags" else FLAGS)["flags"])[:5]:
            for subject in ("alice",):
                details = client.get_assignment_details(key, subject, {"country": "US", "age": 30}, None)
                assert not details.description.startswith("evaluation failed"), (key, details.description)
    assert accepted > 10 and refused > 10  # both outcomes exercised
