"""Issue 13 §6: batch calls never raise; a bad attribute value affects only itself; plain and
obfuscated configurations give the same answers; a differential fuzz of batch vs single vs
obfuscated."""

import json
import logging
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sortition.serving import Attributes, Client, Configuration
from sortition.serving import client as client_module
from sortition.serving.obfuscation import obfuscate_json

UFC = Path(__file__).resolve().parents[1] / "conformance" / "eppo" / "ufc"
FLAGS_JSON = (UFC / "flags-v1.json").read_text()
PLAIN = Configuration.from_json(FLAGS_JSON)
OBFUSCATED = Configuration.from_json(obfuscate_json(FLAGS_JSON))
BANDITS = Configuration.from_json((UFC / "bandit-flags-v1.json").read_text(),
                                  (UFC / "bandit-models-v1.json").read_text())
FLAG_KEYS = sorted(json.loads(FLAGS_JSON)["flags"])
ACTIONS = {"nike": {"brand_affinity": 1.2, "loyalty_tier": "gold"}, "adidas": {"brand_affinity": 0.4},
           "reebok": None, "puma": Attributes({"brand_affinity": 0.2}, {"loyalty_tier": "silver"})}


class Hostile:
    def __str__(self):
        raise RuntimeError("no string for you")

    __repr__ = __str__


@pytest.fixture(autouse=True)
def _quiet_serving_logs(caplog):
    caplog.set_level(logging.CRITICAL, logger="sortition.serving")


NAMES = st.sampled_from(["country", "email", "age", "id", "version", "number", "appVersion", "height",
                         "account_age", "gender_identity", "loyalty_tier"])
HOSTILE_NAMES = st.sampled_from([1, None, ("t",), 2.5, True])
VALUES = st.one_of(
    st.sampled_from(["US", "Canada", "Mexico", "UK", "a@example.com", "x@test.com", "zach", "1.2.3", "10.0.1",
                     "2.0.0-beta", "", "\x00", "\ud800", "true", "123", "1e400"]),
    st.integers(min_value=-(10**40), max_value=10**40), st.sampled_from([10**400, -(10**400), 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.just([1, 2]), st.just({"nested": 1}), st.builds(Hostile),
)
ATTRIBUTES = st.one_of(
    st.dictionaries(NAMES, VALUES, max_size=6),
    st.dictionaries(st.one_of(NAMES, HOSTILE_NAMES), VALUES, max_size=6),
)
SUBJECT_KEYS = st.one_of(st.text(max_size=12), st.sampled_from(["alice", "bob", "zach", "\ud800x"]),
                         st.none(), st.integers())


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(flag=st.sampled_from(FLAG_KEYS), subjects=st.lists(st.tuples(SUBJECT_KEYS, ATTRIBUTES), max_size=12))
def test_batch_single_and_obfuscated_agree(flag, subjects):
    plain, obfuscated = Client(PLAIN), Client(OBFUSCATED)
    batch = plain.get_assignments(flag, subjects, None)
    batch_obfuscated = obfuscated.get_assignments(flag, subjects, None)
    details = plain.get_assignments_details(flag, subjects, None)
    assert len(batch) == len(batch_obfuscated) == len(details) == len(subjects)
    for (key, attributes), b, bo, d in zip(subjects, batch, batch_obfuscated, details):
        single = plain.get_assignment(flag, key, attributes, None)
        single_obfuscated = obfuscated.get_assignment(flag, key, attributes, None)
        assert _same(single, b) and _same(single, bo) and _same(single, single_obfuscated), (key, attributes)
        one = plain.get_assignment_details(flag, key, attributes, None)
        other = obfuscated.get_assignment_details(flag, key, attributes, None)
        assert (one.code, one.variation_key) == (other.code, other.variation_key) == (d.code, d.variation_key)
        assert not one.description.startswith("evaluation failed"), one.description


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(subjects=st.lists(st.tuples(SUBJECT_KEYS, ATTRIBUTES), min_size=0, max_size=40))
def test_bandit_batch_agrees_with_single_calls(subjects):
    client = Client(BANDITS)
    batch = client.get_bandit_actions("banner_bandit_flag", subjects, ACTIONS, "default")
    assert len(batch) == len(subjects)
    for (key, attributes), b in zip(subjects, batch):
        single = client.get_bandit_action("banner_bandit_flag", key, attributes, ACTIONS, "default")
        assert (single.variation, single.action) == (b.variation, b.action), (key, attributes)
        if single.evaluation is not None:
            assert _same(single.evaluation.action_weight, b.evaluation.action_weight)


def test_bulk_hashed_batches_agree_with_single_calls(monkeypatch):
    monkeypatch.setattr(client_module, "MIN_VECTOR", 1)  # the numpy md5 path, on a small audience
    plain = Client(PLAIN)
    subjects = [(f"user-{i}", {"country": ["US", "Canada", "UK"][i % 3], "email": f"u{i}@example.com",
                               "age": i % 90}) for i in range(300)]
    for flag in FLAG_KEYS:
        batch = plain.get_assignments(flag, subjects, None)
        assert all(_same(b, plain.get_assignment(flag, k, a, None)) for (k, a), b in zip(subjects, batch)), flag


@pytest.mark.parametrize("subjects", [
    None, 5, "abc", b"xy", [1, 2, 3], [(None, {}), ("a", 5), ("b", {"x": Hostile()}), ("c",), ("d", {}, 3)],
    {None: {}}, {"e": ["not", "a", "dict"]}, [("f", {"age": 10**400, 7: "x"})],
])
@pytest.mark.parametrize("actions", [
    None, 5, "nike", ["a", None, 3], {"a": 5, 3: {}}, {"a": {"x": 10**400}}, ACTIONS, {}, [Hostile()],
])
def test_hostile_batch_inputs_never_raise(subjects, actions):
    client = Client(BANDITS)
    results = client.get_bandit_actions("banner_bandit_flag", subjects, actions, "default")
    values = client.get_assignments("banner_bandit_flag", subjects, "default")
    details = client.get_assignments_details("banner_bandit_flag", subjects, "default")
    expected = 0 if isinstance(subjects, (int, str, bytes)) or subjects is None else len(subjects)
    assert len(results) == len(values) == len(details) == expected
    for r, v, d in zip(results, values, details):
        assert r.variation == v == d.value
        if d.code == "ASSIGNMENT_ERROR":  # the reason, per subject
            assert r.details is not None and r.details.description == d.description
            assert "must be a" in d.description


def test_a_bad_attribute_value_affects_only_itself():
    plain, bandits = Client(PLAIN), Client(BANDITS)
    attributes = {"country": "US", "email": "a@example.com", "age": 30}
    for hostile in (10**400, -(10**400), Hostile(), float("nan"), "\ud800"):
        worse = dict(attributes, unused=hostile)
        for flag in FLAG_KEYS:
            assert _same(plain.get_assignment(flag, "alice", worse, None),
                         plain.get_assignment(flag, "alice", attributes, None)), (flag, hostile)
        one = bandits.get_bandit_action("banner_bandit_flag", "alice", worse, ACTIONS, "default")
        other = bandits.get_bandit_action("banner_bandit_flag", "alice", attributes, ACTIONS, "default")
        assert (one.variation, one.action) == (other.variation, other.action)
    # a huge int in a scored attribute is that attribute missing, not a lost variation
    huge = bandits.get_bandit_action("banner_bandit_flag", "alice", {"age": 10**400}, ACTIONS, "default")
    missing = bandits.get_bandit_action("banner_bandit_flag", "alice", {}, ACTIONS, "default")
    assert (huge.variation, huge.action) == (missing.variation, missing.action)
    assert huge.variation != "default"
    # a bad action is left out; the others are still offered
    partial = bandits.get_bandit_action("banner_bandit_flag", "alice", attributes,
                                        {"nike": {}, "adidas": 5, 7: {}}, "default")
    assert partial.variation != "default" and partial.action in (None, "nike")
