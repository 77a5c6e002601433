"""Rules: offline masks agree with request-time matching; JSON form; describe; bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sortition.rules import Condition, Rule

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 2.0, 3.5, 10.0, 1e21, 1e-7]),
)
INTS = st.integers(-(2**40), 2**40) | st.sampled_from([0, 1, 2, 3, 10])
LEVELS = st.sampled_from(["a", "b", "mobile", "1", "1.0", "3.5", "true", "", "1.2.3", "10"])


@st.composite
def columns(draw, n):
    kind = draw(st.sampled_from(["float", "int", "Int64", "bool", "boolean", "str", "string", "category", "mixed"]))
    if kind == "float":
        return pd.Series(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype="float64")
    if kind == "int":
        return pd.Series(draw(st.lists(INTS, min_size=n, max_size=n)), dtype="int64")
    if kind == "Int64":
        return pd.Series(draw(st.lists(st.none() | INTS, min_size=n, max_size=n)), dtype="Int64")
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if kind == "boolean":
        return pd.Series(draw(st.lists(st.none() | st.booleans(), min_size=n, max_size=n)), dtype="boolean")
    if kind == "str":
        return pd.Series(draw(st.lists(st.none() | st.just(np.nan) | LEVELS, min_size=n, max_size=n)), dtype=object)
    if kind == "string":
        return pd.Series(draw(st.lists(st.none() | LEVELS, min_size=n, max_size=n)), dtype="string")
    if kind == "category":
        return pd.Series(draw(st.lists(st.none() | LEVELS, min_size=n, max_size=n)), dtype="category")
    values = st.none() | LEVELS | INTS | FLOATS | st.booleans()
    return pd.Series(draw(st.lists(values, min_size=n, max_size=n)), dtype=object)


VALUE_LIST = st.lists(LEVELS | INTS.map(str) | FLOATS.map(lambda x: repr(x)), max_size=4)
THRESHOLDS = FLOATS.filter(math.isfinite) | INTS | st.sampled_from(["3.5", "1.2.3", "abc", "10"])


@st.composite
def conditions(draw):
    op = draw(st.sampled_from(["ONE_OF", "NOT_ONE_OF", "GT", "GTE", "LT", "LTE", "IS_NULL", "MATCHES"]))
    if op in ("ONE_OF", "NOT_ONE_OF"):
        value = draw(VALUE_LIST)
    elif op == "IS_NULL":
        value = draw(st.booleans())
    elif op == "MATCHES":
        value = draw(st.sampled_from(["^a", "1", "e", "^$"]))
    else:
        value = draw(THRESHOLDS)
    return Condition("x", op, value)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mask_agrees_with_request_time_matching(data):
    n = data.draw(st.integers(1, 12))
    frame = pd.DataFrame({"x": data.draw(columns(n)), "y": np.arange(n, dtype=float)})
    rule = Rule([data.draw(conditions())])
    if data.draw(st.booleans()):
        rule = rule & Condition("y", "GTE", 1)
    mask = rule.mask(frame)
    online = [rule.matches({"x": frame["x"].iloc[i], "y": frame["y"].iloc[i]}) for i in range(n)]
    assert mask.dtype == bool
    assert mask.tolist() == online


def test_describe_and_known_masks():
    rule = Rule([Condition("device", "ONE_OF", ["mobile", "tablet"]), Condition("recency_days", "GT", 3.5)])
    assert rule.describe() == "device ONE_OF {mobile, tablet} AND recency_days > 3.5"
    assert Rule().describe() == "everyone"
    assert Condition("age", "IS_NULL", True).describe() == "age IS NULL"
    assert Condition("age", "IS_NULL", False).describe() == "age IS NOT NULL"
    assert Condition("age", "LTE", 4.0).describe() == "age <= 4"
    frame = pd.DataFrame({"device": ["mobile", "desktop", None, "tablet"], "recency_days": [4, 5, 6, np.nan]})
    assert rule.mask(frame).tolist() == [True, False, False, False]
    assert Rule().mask(frame).tolist() == [True] * 4
    assert Rule([Condition("recency_days", "IS_NULL", True)]).mask(frame).tolist() == [False] * 3 + [True]


def test_number_one_of_uses_js_spelling():
    frame = pd.DataFrame({"x": [1.0, 1.5, np.nan], "k": [1, 2, 3]})
    assert Rule([Condition("x", "ONE_OF", ["1", "1.5"])]).mask(frame).tolist() == [True, True, False]
    assert Rule([Condition("x", "ONE_OF", ["1.0"])]).mask(frame).tolist() == [False, False, False]
    assert Rule([Condition("k", "NOT_ONE_OF", [2])]).mask(frame).tolist() == [True, False, True]
    assert Rule([Condition("x", "NOT_ONE_OF", ["7"])]).mask(frame).tolist() == [True, True, False]


def test_json_round_trip():
    rule = Rule(
        [
            Condition("country", "NOT_ONE_OF", ["US", "CA"]),
            Condition("age", "GTE", 21),
            Condition("email", "IS_NULL", False),
        ]
    )
    obj = rule.to_json()
    assert obj["conditions"][0] == {"attribute": "country", "operator": "NOT_ONE_OF", "value": ["US", "CA"]}
    assert Rule.from_json(obj) == rule
    assert Rule.from_json(obj["conditions"]) == rule
    assert Rule(obj["conditions"]) == rule


def test_mask_accepts_data_like_objects():
    class Data:
        covariates = pd.DataFrame({"a": [1.0, 5.0]})

    class Post:
        data = Data()

    rule = Rule([Condition("a", "GT", 2)])
    assert rule.mask(Data()).tolist() == [False, True]
    assert rule.mask(Post()).tolist() == [False, True]


def test_bad_input():
    with pytest.raises(ValueError, match="operator 'EQUALS'"):
        Condition("a", "EQUALS", 1)
    with pytest.raises(ValueError, match="needs a list"):
        Condition("a", "ONE_OF", "US")
    with pytest.raises(ValueError, match="needs a number"):
        Condition("a", "GT", [1])
    with pytest.raises(ValueError, match="IS_NULL"):
        Condition("a", "IS_NULL", "maybe")
    with pytest.raises(ValueError, match="column 'b'"):
        Rule([Condition("b", "GT", 1)]).mask(pd.DataFrame({"a": [1]}))
    with pytest.raises(TypeError, match="DataFrame"):
        Rule().mask([1, 2])
    with pytest.raises(ValueError, match="conditions"):
        Rule.from_json({"rules": []})
    # request time never raises
    assert Rule([Condition("a", "GT", 1)]).matches(None) is False
    assert Rule([Condition("a", "GT", 1)]).matches({"a": object()}) is False


def test_masks_of_several_rules_share_conditions():
    frame = pd.DataFrame({"d": ["m", "t", None, "m"], "x": [1.0, 2.0, 3.0, np.nan]})
    shared = Condition("d", "ONE_OF", ["m"])
    rules = [Rule([shared, Condition("x", "GT", 1)]), Rule([shared]), Rule([Condition("d", "IS_NULL", True)])]
    masks = Rule.masks(rules, frame)
    assert masks.shape == (3, 4)
    assert [m.tolist() for m in masks] == [r.mask(frame).tolist() for r in rules]
