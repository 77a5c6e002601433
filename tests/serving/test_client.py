"""Client behaviour: typed values, details, events and dedup, configuration swaps, light import."""

import json
import os
import random
import subprocess
import sys
import threading

import pytest
from ufc_cases import UFC, read

from sortition.serving import Attributes, Client, Configuration
from sortition.serving.events import DedupCache


class Recorder:
    def __init__(self):
        self.assignments, self.bandits = [], []

    def log_assignment(self, event):
        self.assignments.append(event)

    def log_bandit_action(self, event):
        self.bandits.append(event)


@pytest.fixture(scope="module")
def flags_cfg():
    return Configuration.from_json(read("flags-v1.json"))


@pytest.fixture(scope="module")
def bandit_cfg():
    return Configuration.from_json(read("bandit-flags-v1.json"), read("bandit-models-v1.json"))


def test_typed_values_and_type_mismatch(flags_cfg):
    client = Client(flags_cfg)
    assert client.get_assignment("numeric_flag", "alice", {}, 0.0) == 3.1415926
    for name, flag, default in [("test-case-integer-flag.json", "integer-flag", 0),
                                ("test-case-kill-switch-flag.json", "kill-switch", False)]:
        alice = json.loads((UFC / "tests" / name).read_text())["subjects"][0]
        value = client.get_assignment(flag, "alice", alice["subjectAttributes"], default)
        assert value == alice["assignment"] and type(value) is type(alice["assignment"])
    value = client.get_assignment("json-config-flag", "alice", {}, {})
    assert value == {"integer": 1, "string": "one", "float": 1.0}
    value["integer"] = 99  # a fresh object each call: mutation does not leak
    assert client.get_assignment("json-config-flag", "alice", {}, {})["integer"] == 1
    details = client.get_assignment_details("numeric_flag", "alice", {}, "a string default")
    assert details.value == "a string default" and details.code == "TYPE_MISMATCH"
    assert "Found NUMERIC" in details.description


def test_details_shape(flags_cfg):
    d = Client(flags_cfg).get_assignment_details("new-user-onboarding", "zach", {"country": "US"}, "default")
    assert d.code == "MATCH" and d.value == "purple" and d.matched_allocation.key == "id rule"
    assert d.to_dict()["matchedRule"] == {"conditions": [{"attribute": "id", "operator": "MATCHES", "value": "zach"}]}
    assert [a.order_position for a in d.unevaluated_allocations] == [2, 3, 4]
    missing = Client(flags_cfg).get_assignment_details("nope", "zach", {}, "default")
    assert missing.code == "FLAG_UNRECOGNIZED_OR_DISABLED" and missing.description == "Unrecognized or disabled flag: nope"


def rollout_subjects(cfg, attrs, n=2):
    """Subjects inside the rollout's 80 % of traffic."""
    client = Client(cfg)
    keys = (f"user-{i}" for i in range(1000))
    return [k for k in keys if client.get_assignment("new-user-onboarding", k, attrs, "d") == "blue"][:n]


def test_assignment_events_and_dedup(flags_cfg):
    log = Recorder()
    client = Client(flags_cfg, assignment_logger=log)
    attrs = {"country": "US", "email": "x@example.com"}
    bob, carol = rollout_subjects(flags_cfg, attrs)
    for _ in range(3):
        assert client.get_assignment("new-user-onboarding", bob, attrs, "default") == "blue"
    assert len(log.assignments) == 1
    event = log.assignments[0]
    assert event["featureFlag"] == "new-user-onboarding" and event["allocation"] == "rollout"
    assert event["experiment"] == "new-user-onboarding-rollout" and event["variation"] == "blue"
    assert event["subject"] == bob and event["subjectAttributes"] == attrs
    assert event["owner"] == "hippo" and event["allocationvalue_type"] == "rollout"  # extraLogging flattened
    assert event["timestamp"].endswith("Z") and event["metaData"]["sdkName"] == "sortition"
    # doLog false: no event ("id rule" allocation)
    client.get_assignment("new-user-onboarding", "zach", {}, "default")
    assert len(log.assignments) == 1
    # a different subject is a new event
    client.get_assignment("new-user-onboarding", carol, attrs, "default")
    assert len(log.assignments) == 2


def test_dedup_cache_is_bounded_and_relogs_changes():
    cache = DedupCache(max_size=3)
    assert cache.should_log(("f", "s"), ("a", "v")) and not cache.should_log(("f", "s"), ("a", "v"))
    assert cache.should_log(("f", "s"), ("a", "w"))  # the variation changed
    for i in range(10):
        cache.should_log(("f", i), ("a", "v"))
    assert len(cache) == 3
    assert cache.should_log(("f", "s"), ("a", "w"))  # evicted, so logged again


def test_a_failing_logger_never_breaks_serving(flags_cfg):
    class Broken:
        calls = 0

        def log_assignment(self, event):
            Broken.calls += 1
            raise RuntimeError("disk full")

    client = Client(flags_cfg, assignment_logger=Broken())
    attrs = {"country": "US"}
    (bob,) = rollout_subjects(flags_cfg, attrs, 1)
    assert client.get_assignment("new-user-onboarding", bob, attrs, "d") == "blue"
    assert client.get_assignment("new-user-onboarding", bob, attrs, "d") == "blue"
    assert Broken.calls == 2  # not cached as logged, so retried


def test_bandit_events(bandit_cfg):
    log = Recorder()
    client = Client(bandit_cfg, assignment_logger=log)  # one object logs both kinds
    subject = Attributes(numeric={"age": 30, "account_age": 2}, categorical={"country": "UK", "zip": 22203})
    actions = {"nike": {"brand_affinity": 1.0, "loyalty_tier": "gold"}, "adidas": {}, "reebok": {}}
    results = [client.get_bandit_action("banner_bandit_flag", f"s{i}", subject, actions, "d") for i in range(40)]
    with_action = [r for r in results if r.action is not None]
    assert with_action and len(log.bandits) == len(with_action)
    event = log.bandits[0]
    r = with_action[0]
    assert event["flagKey"] == "banner_bandit_flag" and event["banditKey"] == "banner_bandit"
    assert event["action"] == r.action and event["actionProbability"] == r.evaluation.action_weight
    assert event["modelVersion"] == "123" and event["optimalityGap"] == r.evaluation.optimality_gap
    assert event["subjectCategoricalAttributes"] == {"country": "UK", "zip": "22203"}
    assert event["subjectNumericAttributes"] == {"age": 30.0, "account_age": 2.0}
    client.get_bandit_action("banner_bandit_flag", with_action[0].evaluation.subject_key, subject, actions, "d")
    assert len(log.bandits) == len(with_action)  # repeat not logged
    details = client.get_bandit_action_details("banner_bandit_flag", with_action[0].evaluation.subject_key,
                                               subject, actions, "d").details
    assert details.bandit_key == "banner_bandit" and details.bandit_action == r.action


EPPO_BANDIT_FIELDS = {"flagKey", "banditKey", "subject", "action", "actionProbability", "optimalityGap",
                      "modelVersion", "subjectNumericAttributes", "subjectCategoricalAttributes",
                      "actionNumericAttributes", "actionCategoricalAttributes", "timestamp", "metaData"}


def test_bandit_events_carry_the_offered_actions_in_sortitions_own_field(bandit_cfg):
    actions = {"nike": {"brand_affinity": 1.0, "loyalty_tier": "gold", "bad": float("nan")}, "adidas": None,
               "puma": Attributes({"brand_affinity": 0.2}, {"loyalty_tier": 5})}
    log, quiet = Recorder(), Recorder()
    for client in (Client(bandit_cfg, log), Client(bandit_cfg, quiet, log_offered_actions=False)):
        for i in range(30):
            client.get_bandit_action("banner_bandit_flag", f"s{i}", {"age": 30}, actions, "d")
    assert log.bandits and len(log.bandits) == len(quiet.bandits)
    for event, plain in zip(log.bandits, quiet.bandits, strict=True):
        assert set(event) == EPPO_BANDIT_FIELDS | {"sortitionOfferedActions"}
        assert set(plain) == EPPO_BANDIT_FIELDS
        assert {k: v for k, v in event.items() if k in EPPO_BANDIT_FIELDS and k != "timestamp"} == {
            k: v for k, v in plain.items() if k != "timestamp"}
        assert event["sortitionOfferedActions"] == {
            "nike": {"numericAttributes": {"brand_affinity": 1.0},
                     "categoricalAttributes": {"loyalty_tier": "gold"}},
            "adidas": {"numericAttributes": {}, "categoricalAttributes": {}},
            "puma": {"numericAttributes": {"brand_affinity": 0.2},
                     "categoricalAttributes": {"loyalty_tier": "5"}},
        }
        chosen = event["sortitionOfferedActions"][event["action"]]
        assert chosen == {"numericAttributes": event["actionNumericAttributes"],
                          "categoricalAttributes": event["actionCategoricalAttributes"]}


def test_set_configuration_is_atomic(flags_cfg, bandit_cfg):
    client = Client(flags_cfg)
    seen = set()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            a = client.get_assignment("numeric_flag", "alice", {}, -1.0)
            b = client.get_bandit_action("cold_start_bandit_flag", "alice", {}, {"x": {}}, "none").variation
            seen.add((a, b))

    t = threading.Thread(target=serve)
    t.start()
    for _ in range(200):
        client.set_configuration(bandit_cfg)
        client.set_configuration(flags_cfg)
    stop.set()
    t.join()
    # each call sees one whole configuration: numeric_flag exists only in flags_cfg,
    # the bandit flag only in bandit_cfg
    assert seen <= {(3.1415926, "none"), (-1.0, "cold_start_bandit"), (3.1415926, "cold_start_bandit"),
                    (-1.0, "none")}
    assert client.configuration is flags_cfg


def test_no_configuration_serves_defaults():
    client = Client()
    assert client.get_assignment("any", "s", {}, "d") == "d"
    assert client.get_bandit_action("any", "s", {}, {"a": {}}, "d") == ("d", None, None, None)
    with pytest.raises(TypeError, match="log_assignment"):
        Client(assignment_logger=object())


def test_import_is_light():
    code = ("import sys, sortition.serving; "
            "print(any(m in sys.modules for m in ('numpy', 'pandas', 'stochtree', 'duckdb')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("obfuscate", [False, True])
def test_batch_assignments_match_single_calls(obfuscate):
    import random

    from ufc_cases import cases

    from sortition.serving.obfuscation import obfuscate_json

    text = read("flags-v1.json")
    cfg = Configuration.from_json(obfuscate_json(text) if obfuscate else text)
    rng = random.Random(17)
    for _, case in cases("tests"):
        subjects = [(s["subjectKey"], s["subjectAttributes"]) for s in case["subjects"]]
        subjects += [(f"x{i}", {"country": rng.choice(["US", "UK", "Mexico", None]), "age": rng.randint(1, 90),
                                "version": rng.choice(["1.2.3", "2.0.0", "bad"]), "email": rng.choice(
                                    ["a@example.com", "b@mycompany.com"])}) for i in range(60)]
        single_log, batch_log = Recorder(), Recorder()
        single = [Client(cfg, single_log).get_assignment(case["flag"], k, a, case["defaultValue"],
                                                         variation_type=case["variationType"]) for k, a in subjects]
        batch = Client(cfg, batch_log).get_assignments(case["flag"], subjects, case["defaultValue"],
                                                       variation_type=case["variationType"])
        assert batch == single, case["flag"]
        strip = [{k: v for k, v in e.items() if k != "timestamp"} for e in single_log.assignments]
        assert [{k: v for k, v in e.items() if k != "timestamp"} for e in batch_log.assignments] == strip


def test_batch_bandit_events_match_single_calls(bandit_cfg):
    rng = random.Random(23)
    subjects = [(f"user-{i}", {"age": rng.randint(18, 80), "account_age": rng.random() * 9,
                               "country": rng.choice(["UK", "USA"]),
                               "gender_identity": rng.choice(["female", "male"])}) for i in range(300)]
    actions = {"nike": {"brand_affinity": 1.0, "loyalty_tier": "gold", "bad": float("nan")},
               "adidas": {"brand_affinity": 0.4},
               "reebok": None, "puma": Attributes({"brand_affinity": 0.2}, {"loyalty_tier": 5})}
    single_log, batch_log = Recorder(), Recorder()
    single_client, batch_client = Client(bandit_cfg, single_log), Client(bandit_cfg, batch_log)
    for k, a in subjects:
        single_client.get_bandit_action("banner_bandit_flag", k, a, actions, "default")
    batch_client.get_bandit_actions("banner_bandit_flag", subjects, actions, "default")

    def strip(events):
        return [{k: v for k, v in e.items() if k != "timestamp"} for e in events]

    assert len(batch_log.bandits) > 100
    assert strip(batch_log.bandits) == strip(single_log.bandits)
    assert strip(batch_log.assignments) == strip(single_log.assignments)
    assert len({e["timestamp"] for e in batch_log.bandits + batch_log.assignments}) == 1  # one per call
    # events never share mutable dicts: a logger editing one leaves the others intact
    nike = [e for e in batch_log.bandits if e["action"] == "nike"]
    nike[0]["actionNumericAttributes"]["brand_affinity"] = -1
    assert all(e["actionNumericAttributes"]["brand_affinity"] == 1.0 for e in nike[1:])


def test_compiled_model_shape(flags_cfg):
    """The compiled model the columnar calls build on (docs/serving.md, "Compiled model")."""
    from datetime import datetime

    from sortition.serving.sharding import shard

    seen_salts = 0
    for flag in flags_cfg.flags.values():
        assert len(flag.salts) == len(flag.hashers) == len(set(flag.salts))
        for i, salt in enumerate(flag.salts):
            assert shard("alice", flag.total_shards, flag.hashers[i]) == shard(f"{salt}-alice", flag.total_shards)
        for position, alloc in enumerate(flag.allocations):
            assert alloc.position == position
            for split in alloc.splits:
                assert split.variation is flag.variations.get(split.variation_key)
                for sh in split.shards:
                    seen_salts += 1
                    assert flag.salts[sh.salt_index] == sh.salt
                    assert list(zip(sh.starts, sh.ends)) == list(sh.ranges)
    assert seen_salts > 5
    log = Recorder()
    subject = rollout_subjects(flags_cfg, {"country": "US"}, 1)[0]
    Client(flags_cfg, assignment_logger=log).get_assignment("new-user-onboarding", subject, {"country": "US"}, "d")
    stamp = log.assignments[0]["timestamp"]  # RFC 3339, milliseconds, UTC
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00.000Z")
    assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0
