"""Properties of the shard hash and the bandit evaluator (hypothesis, seeded)."""

import hashlib
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.serving import Attributes, Client, Configuration
from sortition.serving.bandits import (
    action_weights,
    evaluate_bandit,
    parse_bandit_model,
    score_actions,
    select_action,
    shuffled_actions,
    top_action,
)
from sortition.serving.md5_batch import shards as bulk_shards
from sortition.serving.sharding import shard, shards

keys = st.text(min_size=1, max_size=8)
scores_st = st.dictionaries(keys, st.floats(-50, 50, allow_nan=False), min_size=1, max_size=8)


@settings(deadline=None, derandomize=True)  # seeded; no timing on a shared machine
@given(st.text(max_size=40), st.integers(1, 2**31))
def test_shard_is_in_range_and_is_the_md5_prefix(text, total):
    s = shard(text, total)
    assert 0 <= s < total
    assert s == int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "big") % total


@settings(deadline=None, derandomize=True)  # seeded; no timing on a shared machine
@given(st.lists(st.text(max_size=20), max_size=20), st.integers(1, 10_000))
def test_bulk_shards_agree(texts, total):
    expected = [shard(t, total) for t in texts]
    assert shards(texts, total) == expected
    assert bulk_shards(texts, total).tolist() == expected


@settings(deadline=None, derandomize=True)  # seeded; no timing on a shared machine
@given(scores_st, st.floats(0, 100), st.floats(0, 1))
def test_weights_are_probabilities_with_the_floor(scores, gamma, floor):
    w = action_weights(scores, gamma, floor)
    n = len(scores)
    assert set(w) == set(scores)
    assert math.isclose(sum(w.values()), 1.0, abs_tol=1e-9)
    assert all(v >= floor / n - 1e-12 for v in w.values())
    best, _ = top_action(scores)
    assert w[best] >= max(w.values()) - 1e-12  # the top action is never out-weighed (up to rounding)


@settings(deadline=None, derandomize=True)  # seeded; no timing on a shared machine
@given(st.dictionaries(keys, st.floats(-5, 5, allow_nan=False), min_size=1, max_size=6))
def test_gamma_zero_is_uniform(scores):
    w = action_weights(scores, 0.0, 0.0)
    assert all(math.isclose(v, 1 / len(scores)) for v in w.values())


def test_top_score_ties_go_to_the_smaller_key():
    assert top_action({"b": 1.0, "a": 1.0, "c": 0.5}) == ("a", 1.0)
    w = action_weights({"b": 2.0, "a": 2.0}, 10.0, 0.0)
    assert w["b"] == 0.5 and w["a"] == 0.5  # the non-top one gets 1/(2 + 0), the top the rest


MODEL = parse_bandit_model({
    "gamma": 3.0, "defaultActionScore": 0.25, "actionProbabilityFloor": 0.2,
    "coefficients": {
        "a": {"actionKey": "a", "intercept": 1.0,
              "subjectNumericCoefficients": [{"attributeKey": "x", "coefficient": 0.5, "missingValueCoefficient": -1}],
              "subjectCategoricalCoefficients": [{"attributeKey": "c", "valueCoefficients": {"u": 1.5, "303": 2.0},
                                                  "missingValueCoefficient": 0.1}],
              "actionNumericCoefficients": [{"attributeKey": "p", "coefficient": -2, "missingValueCoefficient": 0}],
              "actionCategoricalCoefficients": []},
        "b": {"actionKey": "b", "intercept": 0.5,
              "subjectNumericCoefficients": [{"attributeKey": "x", "coefficient": -0.3, "missingValueCoefficient": 2}],
              "subjectCategoricalCoefficients": [], "actionNumericCoefficients": [],
              "actionCategoricalCoefficients": [{"attributeKey": "t", "valueCoefficients": {"true": 1.0},
                                                 "missingValueCoefficient": -0.5}]},
    },
})

subjects_st = st.fixed_dictionaries({}, optional={
    "x": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10), st.none(), st.text(max_size=3)),
    "c": st.one_of(st.sampled_from(["u", "v", ""]), st.integers(300, 305), st.booleans(), st.none()),
})
actions_st = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "é", "Z"]),
    st.fixed_dictionaries({}, optional={"p": st.floats(-3, 3), "t": st.booleans()}),
    min_size=1,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.text(max_size=10), subjects_st, actions_st, st.randoms(use_true_random=False))
def test_action_order_never_changes_the_result(subject_key, subject, actions, rnd):
    first = evaluate_bandit("flag", subject_key, subject, actions, MODEL)
    items = list(actions.items())
    rnd.shuffle(items)
    again = evaluate_bandit("flag", subject_key, subject, dict(items), MODEL)
    assert (again.action_key, again.action_score, again.action_weight, again.optimality_gap) == \
        (first.action_key, first.action_score, first.action_weight, first.optimality_gap)
    assert first.action_key in actions
    assert first.optimality_gap >= 0
    assert first == evaluate_bandit("flag", subject_key, subject, actions, MODEL)  # deterministic


def test_grouped_attributes_keep_their_group():
    # numbers in the categorical group are stringified; non-numbers in the numeric group are missing
    grouped = score_actions(MODEL, Attributes(numeric={"x": "7"}, categorical={"c": 303}), {"a": None})
    assert grouped["a"] == 1.0 + (-1) + 2.0 + 0
    flat = score_actions(MODEL, {"x": 4, "c": 303}, {"a": {}})  # a flat 303 is numeric: "c" is missing
    assert flat["a"] == 1.0 + 2.0 + 0.1 + 0
    nan = score_actions(MODEL, {"x": float("nan")}, {"a": {}})
    absent = score_actions(MODEL, {}, {"a": {}})
    assert nan == absent


def test_unknown_action_scores_the_default():
    assert score_actions(MODEL, {}, {"zzz": {}}) == {"zzz": 0.25}


def test_rounding_never_leaves_no_action():
    # weights that sum to less than every threshold: the last action in shuffled order is taken
    w = {"a": 0.0, "b": 0.0, "c": 0.0}
    for subject in ("s", "t", "u"):
        assert select_action("f", subject, w) == shuffled_actions("f", subject, w)[-1]


def test_batch_matches_single_calls():
    from ufc_cases import read

    client = Client(Configuration.from_json(read("bandit-flags-v1.json"), read("bandit-models-v1.json")))
    rng = random.Random(11)
    subjects = [(f"user-{i}", {"age": rng.choice([20, 35.5, None, float("nan"), "x"]),
                               "account_age": rng.random() * 9, "country": rng.choice(["UK", "USA"]),
                               "gender_identity": rng.choice(["female", "male", None, 3])}) for i in range(400)]
    actions = {"nike": {"brand_affinity": 1.0, "loyalty_tier": "gold"}, "adidas": {"brand_affinity": 0.4},
               "reebok": {}, "puma": Attributes({"brand_affinity": 0.2}, {"loyalty_tier": 5})}
    for flag in ("banner_bandit_flag", "car_bandit_flag", "non_bandit_flag", "missing_flag"):
        batch = client.get_bandit_actions(flag, subjects, actions, "default")
        single = [client.get_bandit_action(flag, k, a, actions, "default") for k, a in subjects]
        assert [(b.variation, b.action, b.evaluation) for b in batch] == \
            [(s.variation, s.action, s.evaluation) for s in single]
    assert any(b.action for b in client.get_bandit_actions("banner_bandit_flag", subjects, actions, "d"))
