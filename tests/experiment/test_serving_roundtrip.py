"""Exported plans served by Sortition's Client (and Eppo's own SDK when installed)."""

import json

import numpy as np
import pandas as pd
import pytest

from sortition.experiment import TOTAL_SHARDS, make_plan, plan_to_configuration
from sortition.experiment.simulation import visitor_attributes
from sortition.rules import Condition, Rule
from sortition.scenarios import make_scenario
from sortition.serving import Client, Configuration

ARMS = ("control", "free_shipping", "bundle")
KEY = "checkout-exp"


def _plan():
    segments = [
        (0, Rule((Condition("device", "ONE_OF", ["mobile"]), Condition("recency", "LTE", 7.5)))),
        (1, Rule((Condition("device", "ONE_OF", ["mobile"]),))),
        (2, Rule((Condition("recency", "IS_NULL", True),))),
        (3, Rule((Condition("country", "NOT_ONE_OF", ["US", "GB"]), Condition("returning", "ONE_OF", ["true"])))),
    ]
    allocation = {
        0: {"control": 0.1, "free_shipping": 0.85, "bundle": 0.05},
        1: {"control": 0.3, "free_shipping": 0.6, "bundle": 0.1},
        2: {"control": 0.2, "free_shipping": 0.2, "bundle": 0.6},
        3: {"control": 0.0, "free_shipping": 0.0, "bundle": 1.0},
    }
    return make_plan(ARMS, segments, allocation, default_allocation={"control": 0.5, "free_shipping": 0.25,
                                                                     "bundle": 0.25}, round=3)


def _visitors(n, seed):
    visitors = make_scenario("storefront").sample_visitors(n, np.random.default_rng(seed))
    return [f"user-{seed}-{i}" for i in range(n)], visitors


class Events:
    def __init__(self):
        self.events = []

    def log_assignment(self, event):
        self.events.append(dict(event))

    def log_bandit_action(self, event):
        pass


def test_client_serves_the_plan():
    plan = _plan()
    config = plan_to_configuration(plan, KEY)
    events = Events()
    client = Client(Configuration.from_json(json.dumps(config)), assignment_logger=events)
    subjects, visitors = _visitors(20000, 1)
    attrs = visitor_attributes(visitors)
    served = [client.get_assignment(KEY, s, a, "none") for s, a in zip(subjects, attrs)]
    assert "none" not in served and len(events.events) == len(subjects)
    segment_of = plan.segment_index(visitors)
    by_subject = {e["subject"]: e for e in events.events}
    # subject -> segment: the allocation the Client matched is the one the offline masks pick
    keys = [f"segment-{plan.segments[i].id}" if i < len(plan.segments) else "default" for i in segment_of]
    assert [by_subject[s]["allocation"] for s in subjects] == keys
    # segment -> arm probabilities: the propensity logged is the plan's, within 1/10000
    for s, i, arm in zip(subjects, segment_of, served):
        seg = (*plan.segments, plan.default)[i]
        event = by_subject[s]
        assert event["variation"] == arm
        assert abs(float(event["propensity"]) - seg.arm_probabilities[arm]) <= 1 / TOTAL_SHARDS
        assert event["round"] == "3" and event["cell"] in ("control", "explore", "optimized")
        if event["cell"] == "control":
            assert arm == "control"
    # and the served frequencies follow the plan
    frame = pd.DataFrame({"seg": segment_of, "arm": served})
    for i, seg in enumerate((*plan.segments, plan.default)):
        rows = frame[frame.seg == i]
        if len(rows) < 2000:
            continue
        for arm, p in seg.arm_probabilities.items():
            assert abs((rows.arm == arm).mean() - p) < 4 * np.sqrt(p * (1 - p) / len(rows)) + 1e-3


def test_eppo_sdk_assigns_like_sortition():
    eppo_client = pytest.importorskip("eppo_client")
    from eppo_client.config import Config

    class EppoEvents(eppo_client.AssignmentLogger):
        def __init__(self):
            self.events = []

        def log_assignment(self, event):
            self.events.append(dict(event))

    plan = _plan()
    config = plan_to_configuration(plan, KEY)
    eppo_events = EppoEvents()
    eppo = eppo_client.init(
        Config(
            api_key="offline",
            assignment_logger=eppo_events,
            initial_configuration=eppo_client.Configuration(flags_configuration=json.dumps(config).encode()),
            poll_interval_seconds=None,
        )
    )
    our_events = Events()
    ours = Client(Configuration.from_json(config), assignment_logger=our_events)
    subjects, visitors = _visitors(3000, 2)
    attrs = visitor_attributes(visitors)
    theirs = [eppo.get_string_assignment(KEY, s, a, "none") for s, a in zip(subjects, attrs)]
    mine = [ours.get_assignment(KEY, s, a, "none") for s, a in zip(subjects, attrs)]
    assert "none" not in mine
    assert theirs == mine
    # Eppo logs the same cell and propensity in its events
    assert len(eppo_events.events) == len(subjects)
    mine_events = {e["subject"]: e for e in our_events.events}
    for e in eppo_events.events[:200]:
        extra = e.get("extraLogging") or e
        assert extra["propensity"] == mine_events[e["subject"]]["propensity"]
        assert extra["cell"] == mine_events[e["subject"]]["cell"]


def test_or_segments_export_as_one_allocation_and_are_served_like_their_masks():
    from sortition.experiment.persistence import plan_from_json, plan_to_json
    from sortition.rules import AnyOf

    near = AnyOf((Rule((Condition("recency", "LTE", 7.5),)), Rule((Condition("recency", "IS_NULL", True),))))
    segments = [(0, near), (1, Rule((Condition("recency", "GT", 7.5),)))]
    allocation = {0: {"control": 0.1, "free_shipping": 0.8, "bundle": 0.1},
                  1: {"control": 0.2, "free_shipping": 0.1, "bundle": 0.7}}
    plan = make_plan(ARMS, segments, allocation, round=2)
    config = plan_to_configuration(plan, KEY)
    allocations = config["flags"][KEY]["allocations"]
    assert allocations[0]["rules"] == near.to_json() and len(allocations[0]["rules"]) == 2
    events = Events()
    client = Client(Configuration.from_json(json.dumps(config)), assignment_logger=events)
    subjects, visitors = _visitors(4000, 2)
    attrs = visitor_attributes(visitors)
    for s, a in zip(subjects, attrs):
        client.get_assignment(KEY, s, a, "none")
    segment_of = plan.segment_index(visitors)
    assert (segment_of == 0).sum() > 0 and visitors["recency"].isna().any()
    assert [e["allocation"] for e in events.events] == [f"segment-{plan.segments[i].id}" for i in segment_of]
    assert all(near.matches(a) == (i == 0) for a, i in zip(attrs, segment_of))
    assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan  # the state file keeps the OR
