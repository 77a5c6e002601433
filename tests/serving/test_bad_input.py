"""Bad configurations raise a clear error naming the JSON path; bad requests serve the default."""

import copy
import json
import math

import pytest
from ufc_cases import read

from sortition.serving import Client, Configuration
from sortition.serving.bandits import parse_bandit_model


def flags_with(allocation_rules=None, **flag_overrides):
    flag = {
        "key": "f", "enabled": True, "variationType": "STRING", "totalShards": 10000,
        "variations": {"on": {"key": "on", "value": "on"}},
        "allocations": [{"key": "a", "rules": allocation_rules or [], "doLog": True,
                         "splits": [{"variationKey": "on", "shards": []}]}],
    }
    flag.update(flag_overrides)
    return {"format": "SERVER", "flags": {"f": flag}}


def test_malformed_json():
    with pytest.raises(ValueError, match="flags: not valid JSON"):
        Configuration.from_json('{"flags": {')
    with pytest.raises(ValueError, match="bandits: not valid JSON"):
        Configuration.from_json(read("bandit-flags-v1.json"), b"\xff{")
    with pytest.raises(TypeError, match="expected str, bytes or dict"):
        Configuration.from_json(42)
    with pytest.raises(ValueError, match="expected a JSON object"):
        Configuration.from_json("[1, 2]")


def test_unknown_operator_names_its_path():
    bad = flags_with([{"conditions": [{"attribute": "age", "operator": "ALMOST", "value": 3}]}])
    with pytest.raises(ValueError, match=r"flags\.f\.allocations\[0\]\.rules\[0\]\.conditions\[0\]\.operator: "
                                         r"unknown operator 'ALMOST'"):
        Configuration.from_json(bad)


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda f: f["allocations"][0]["splits"][0].update(shards=[{"salt": 7, "ranges": []}]),
     r"flags\.f\.allocations\[0\]\.splits\[0\]\.shards\[0\]\.salt: expected a string"),
    (lambda f: f["allocations"][0]["splits"][0].update(
        shards=[{"salt": "s", "ranges": [{"start": 0, "end": "x"}]}]),
     r"splits\[0\]\.shards\[0\]\.ranges\[0\]\.end: expected a whole number"),
    (lambda f: f.update(variationType="DATE"), r"flags\.f\.variationType: 'DATE' is not one of"),
    (lambda f: f.update(allocations={"a": 1}), r"flags\.f\.allocations: expected a list"),
    (lambda f: f["allocations"][0].update(startAt="yesterday"), r"allocations\[0\]\.startAt: expected an ISO 8601"),
    (lambda f: f["allocations"][0].update(rules=[{"conditions": [
        {"attribute": "c", "operator": "ONE_OF", "value": "US"}]}]),
     r"conditions\[0\]\.value: ONE_OF needs a list"),
    (lambda f: f.update(totalShards=0), r"flags\.f\.totalShards: must be positive"),
])
def test_bad_fields_name_their_path(mutate, path):
    cfg = flags_with()
    mutate(cfg["flags"]["f"])
    with pytest.raises(ValueError, match=path):
        Configuration.from_json(cfg)


def test_bad_bandit_model_names_its_path():
    models = json.loads(read("bandit-models-v1.json"))
    models["bandits"]["banner_bandit"]["modelData"]["gamma"] = "fast"
    with pytest.raises(ValueError, match=r"bandits\.banner_bandit\.modelData\.gamma: expected a finite number"):
        Configuration.from_json(read("bandit-flags-v1.json"), models)
    coefficients = {"a": {"intercept": 1, "subjectNumericCoefficients": [{"attributeKey": "x", "coefficient": None,
                                                                           "missingValueCoefficient": 0}]}}
    with pytest.raises(ValueError, match=r"coefficients\.a\.subjectNumericCoefficients\[0\]\.coefficient"):
        parse_bandit_model({"gamma": 1, "coefficients": coefficients})
    with pytest.raises(ValueError, match="actionProbabilityFloor: must be in"):
        parse_bandit_model({"gamma": 1, "actionProbabilityFloor": 2})


def test_bad_obfuscated_field():
    from sortition.serving.obfuscation import obfuscate_flags

    cfg = obfuscate_flags(flags_with([{"conditions": [{"attribute": "x", "operator": "MATCHES", "value": "a"}]}]))
    (flag,) = cfg["flags"].values()
    flag["allocations"][0]["rules"][0]["conditions"][0]["operator"] = "not-a-hash"
    with pytest.raises(ValueError, match=r"conditions\[0\]\.operator: unknown \(obfuscated\) operator"):
        Configuration.from_json(cfg)
    flag["allocations"][0]["rules"] = []
    flag["allocations"][0]["key"] = "%%%"
    with pytest.raises(ValueError, match=r"allocations\[0\]\.key: not valid base64"):
        Configuration.from_json(cfg)


def test_invalid_regex_is_a_false_condition():
    cfg = Configuration.from_json(flags_with([{"conditions": [{"attribute": "e", "operator": "MATCHES",
                                                               "value": "([unclosed"}]}]))
    client = Client(cfg)
    assert client.get_assignment("f", "s", {"e": "([unclosed"}, "default") == "default"
    assert client.get_assignment_details("f", "s", {"e": "x"}, "default").code == "DEFAULT_ALLOCATION_NULL"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), None, "abc", True, [1], {"a": 1}])
def test_odd_attribute_values_never_raise(value):
    rules = [{"conditions": [{"attribute": "age", "operator": "GT", "value": 10}]}]
    client = Client(Configuration.from_json(flags_with(rules)))
    expected = "on" if value == float("inf") else "default"  # +inf > 10; NaN and non-numbers are not
    assert client.get_assignment("f", "s", {"age": value}, "default") == expected


def test_is_null_and_missing_attributes():
    rules = [{"conditions": [{"attribute": "age", "operator": "IS_NULL", "value": True}]}]
    client = Client(Configuration.from_json(flags_with(rules)))
    assert client.get_assignment("f", "s", {}, "d") == "on"
    assert client.get_assignment("f", "s", {"age": None}, "d") == "on"
    assert client.get_assignment("f", "s", {"age": 3}, "d") == "d"
    not_one_of = [{"conditions": [{"attribute": "c", "operator": "NOT_ONE_OF", "value": ["US"]}]}]
    client = Client(Configuration.from_json(flags_with(not_one_of)))
    assert client.get_assignment("f", "s", {}, "d") == "d"  # NOT_ONE_OF is false on a missing attribute
    assert client.get_assignment("f", "s", {"c": "FR"}, "d") == "on"


def test_bandit_odd_inputs_never_raise():
    client = Client(Configuration.from_json(read("bandit-flags-v1.json"), read("bandit-models-v1.json")))
    subject = {"age": float("nan"), "account_age": float("inf"), "country": "UK", "gender_identity": None}
    empty = client.get_bandit_action("banner_bandit_flag", "alice", subject, {}, "default")
    assert empty.action is None and empty.variation in ("banner_bandit", "control")
    r = client.get_bandit_action("banner_bandit_flag", "alice", subject, {"nike": {"brand_affinity": math.nan}},
                                 "default")
    assert r.action in (None, "nike")
    bad = client.get_bandit_action("banner_bandit_flag", "alice", 12, {"nike": {}}, "default")
    assert bad == ("default", None, None, None)
    # bad actions cost only the action: the flag's variation stands (issue 13 §6)
    also_bad = client.get_bandit_action("banner_bandit_flag", "alice", {}, "nike", "default")
    assert also_bad.variation == client.get_assignment("banner_bandit_flag", "alice", {}, "x")
    assert also_bad.action is None
    assert client.get_assignment("banner_bandit_flag", "alice", ["not", "a", "dict"], "d") == "d"


def test_ten_megabyte_configuration():
    base = json.loads(read("flags-v1.json"))
    copies = 10_000_000 // len(json.dumps(base["flags"])) + 1
    flags = {}
    for i in range(copies):
        for key, flag in base["flags"].items():
            f = copy.deepcopy(flag)
            f["key"] = f"{key}-{i}"
            flags[f["key"]] = f
    text = json.dumps({"format": "SERVER", "environment": {"name": "big"}, "flags": flags})
    assert len(text) >= 10_000_000
    client = Client(Configuration.from_json(text))
    assert len(client.configuration.flags) == len(flags)
    small = Client(Configuration.from_json(read("flags-v1.json")))
    attrs = {"country": "US", "email": "x@example.com"}
    assert client.get_assignment("new-user-onboarding-7", "bob", attrs, "d") == \
        small.get_assignment("new-user-onboarding", "bob", attrs, "d")


def test_a_bad_configuration_never_replaces_the_served_one():
    client = Client(Configuration.from_json(read("flags-v1.json")))
    before = client.get_assignment("numeric_flag", "alice", {}, 0.0)
    with pytest.raises(ValueError):
        client.set_configuration(Configuration.from_json('{"flags": {"numeric_flag": {"variationType": 5}}}'))
    with pytest.raises(TypeError):
        client.set_configuration({"flags": {}})
    assert client.get_assignment("numeric_flag", "alice", {}, 0.0) == before == 3.1415926


def test_bad_wire_wrapper_names_its_part():
    with pytest.raises(ValueError, match=r"config\.response: not valid JSON"):
        Configuration.from_json({"version": 1, "config": {"response": "{oops"}})
    with pytest.raises(ValueError, match=r"config\.response: missing"):
        Configuration.from_json({"version": 1, "config": {}})
    with pytest.raises(ValueError, match=r"bandits\.response: missing"):
        Configuration.from_json({"version": 1, "config": {"response": read("flags-v1.json")}, "bandits": {}})
