"""A flag as an allocation plan: exact variation probabilities, checked against serving itself."""

from __future__ import annotations

import numpy as np
import pytest

from sortition.learning.ope import evaluate, flag_plan_data, flag_probabilities, plan_data
from sortition.serving import Client, Configuration


def _split(variation, shards):
    return {
        "variationKey": variation,
        "shards": [{"salt": s, "ranges": [{"start": a, "end": b}]} for s, a, b in shards],
    }


def _flag(allocations):
    return {
        "format": "SERVER",
        "environment": {"name": "Test"},
        "flags": {
            "plan": {
                "key": "plan",
                "enabled": True,
                "variationType": "STRING",
                "variations": {v: {"key": v, "value": v} for v in ("control", "a", "b")},
                "allocations": allocations,
                "totalShards": 10000,
            }
        },
    }


UK_RULE = [{"conditions": [{"attribute": "country", "operator": "ONE_OF", "value": ["UK"]}]}]
FLAGS = _flag(
    [
        {  # UK: half the traffic (salt t), split 30/70 between a and b (salt s)
            "key": "uk",
            "rules": UK_RULE,
            "splits": [
                _split("a", [("t", 0, 5000), ("s", 0, 3000)]),
                _split("b", [("t", 0, 5000), ("s", 3000, 10000)]),
            ],
            "doLog": True,
        },
        {  # everyone (and the UK half that missed the traffic): 20/40/40
            "key": "rest",
            "splits": [
                _split("control", [("s", 0, 2000)]),
                _split("a", [("s", 2000, 6000)]),
                _split("b", [("s", 6000, 10000)]),
            ],
            "doLog": True,
        },
    ]
)


def test_probabilities_match_what_serving_assigns():
    patterns, tables = flag_probabilities(FLAGS, "plan", [{"country": "UK"}, {"country": "US"}, {}])
    assert patterns.tolist() == ["uk+rest", "rest", "rest"]
    uk, us = tables
    # UK: half the traffic gets the UK split (a 30%, b 70%), the other half falls through to rest
    assert uk == pytest.approx({"a": 0.5 * 0.3 + 0.5 * 0.4, "b": 0.5 * 0.7 + 0.5 * 0.4, "control": 0.5 * 0.2})
    assert us == pytest.approx({"control": 0.2, "a": 0.4, "b": 0.4})
    client = Client(Configuration.from_json(FLAGS))
    served = [client.get_assignment("plan", f"user-{i}", {"country": "UK"}, "none") for i in range(20_000)]
    for variation, p in uk.items():
        assert np.mean([s == variation for s in served]) == pytest.approx(p, abs=0.012), variation


def test_flag_plan_data_equals_the_segment_plan_it_encodes():
    rng = np.random.default_rng(0)
    n = 3000
    country = rng.choice(["UK", "US"], n)
    arm = rng.choice(["control", "a", "b"], n)
    reward = rng.normal(size=n) + (arm == "a")
    logged_p = np.full(n, 1 / 3)
    attrs = [{"country": c} for c in country]
    by_flag = flag_plan_data(reward, logged_p, arm, attrs, FLAGS, "plan")
    _, (uk, us) = flag_probabilities(FLAGS, "plan", [{"country": "UK"}, {"country": "US"}])
    by_plan = plan_data(reward, logged_p, country, arm, {"UK": uk, "US": us})
    assert np.allclose(by_flag.target_probability, by_plan.target_probability)
    assert evaluate(by_flag)["DR"].value == pytest.approx(evaluate(by_plan)["DR"].value)


def test_a_flag_serving_the_default_cannot_be_evaluated():
    partial = _flag([{"key": "uk", "rules": UK_RULE, "splits": [_split("a", [])], "doLog": True}])
    with pytest.raises(ValueError, match="serves the default to 100.0%"):
        flag_plan_data([1.0], [0.5], ["a"], [{"country": "US"}], partial, "plan")
    with pytest.raises(ValueError, match="not in the flags"):
        flag_probabilities(partial, "nope", [{}])
