"""Eppo's own Python SDK (Rust core) serves the same variations and actions as Sortition."""

import random

import pytest
from ufc_cases import UFC, cases, read

from sortition.serving import Attributes, Client, Configuration

eppo_client = pytest.importorskip("eppo_client")


def _eppo(flags: str, bandits: str | None = None):
    from eppo_client.config import Config

    class Quiet(eppo_client.AssignmentLogger):
        def log_assignment(self, event):
            pass

        def log_bandit_action(self, event):
            pass

    cfg = eppo_client.Configuration(flags_configuration=flags.encode(),
                                    bandits_configuration=None if bandits is None else bandits.encode())
    return eppo_client.init(Config(api_key="offline", assignment_logger=Quiet(), poll_interval_seconds=None,
                                   initial_configuration=cfg))


_GETTERS = {"STRING": "get_string_assignment", "INTEGER": "get_integer_assignment",
            "NUMERIC": "get_numeric_assignment", "BOOLEAN": "get_boolean_assignment",
            "JSON": "get_json_assignment"}


def test_same_variations_as_eppo_on_the_conformance_flags():
    eppo = _eppo(read("flags-v1.json"))
    ours = Client(Configuration.from_json(read("flags-v1.json")))
    rng = random.Random(3)
    checked = 0
    for _, case in cases("tests"):
        get = getattr(eppo, _GETTERS[case["variationType"]])
        subjects = [(s["subjectKey"], s["subjectAttributes"]) for s in case["subjects"]]
        # plus fresh subjects, so the comparison is not limited to the recorded answers
        subjects += [(f"fresh-{i}", {"country": rng.choice(["US", "UK", "Mexico"]), "age": rng.randint(1, 90),
                                     "email": rng.choice(["a@example.com", "b@mycompany.com"])}) for i in range(20)]
        for key, attrs in subjects:
            theirs = get(case["flag"], key, attrs, case["defaultValue"])
            mine = ours.get_assignment(case["flag"], key, attrs, case["defaultValue"],
                                       variation_type=case["variationType"])
            assert mine == theirs, (case["flag"], key, attrs, mine, theirs)
            checked += 1
    assert checked > 600


def test_same_bandit_actions_as_eppo():
    eppo = _eppo(read("bandit-flags-v1.json"), read("bandit-models-v1.json"))
    ours = Client(Configuration.from_json(read("bandit-flags-v1.json"), read("bandit-models-v1.json")))
    rng = random.Random(5)
    actions = {"nike": {"brand_affinity": 1.2, "loyalty_tier": "gold"}, "adidas": {"brand_affinity": 0.3},
               "reebok": {}, "puma": {"loyalty_tier": "silver", "discount": 0.1}}
    for flag in ("banner_bandit_flag", "banner_bandit_flag_uk_only", "car_bandit_flag", "cold_start_bandit_flag"):
        for i in range(150):
            attrs = {"age": rng.randint(18, 70), "country": rng.choice(["UK", "USA"]),
                     "account_age": rng.random() * 5, "gender_identity": rng.choice(["female", "male"])}
            theirs = eppo.get_bandit_action(flag, f"s{i}", attrs, actions, "default")
            mine = ours.get_bandit_action(flag, f"s{i}", attrs, actions, "default")
            assert (mine.variation, mine.action) == (theirs.variation, theirs.action), (flag, i)
            grouped = ours.get_bandit_action(flag, f"s{i}", Attributes.from_flat(attrs), actions, "default")
            assert (grouped.variation, grouped.action) == (mine.variation, mine.action)
