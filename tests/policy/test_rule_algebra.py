"""``both`` and ``AnyOf.of``: the shorter rules they write match exactly the rows the long forms match,
offline (masks) and at request time (matches), missing and odd values included."""

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.rules import AnyOf, Condition, Rule, both
from sortition.rules.algebra import collapse

LEVELS = ["a", "b", "c", "3"]
VALUES = [None, math.nan, "a", "b", "c", "3", 1, 2.5, 3, "zz", math.inf, -math.inf]
CUTS = [1, 2.5, 3, 3.0, math.inf, "2.0.0"]
FRAME = pd.DataFrame({"x": pd.Series(VALUES * len(VALUES), dtype=object),
                      "y": pd.Series([v for v in VALUES for _ in VALUES], dtype=object)})


@st.composite
def conditions(draw):
    attribute = draw(st.sampled_from(["x", "y"]))
    operator = draw(st.sampled_from(["ONE_OF", "NOT_ONE_OF", "GT", "GTE", "LT", "LTE", "IS_NULL"]))
    if operator in ("ONE_OF", "NOT_ONE_OF"):
        value = draw(st.lists(st.sampled_from(LEVELS), max_size=3, unique=True))
    elif operator == "IS_NULL":
        value = draw(st.booleans())
    else:
        value = draw(st.sampled_from(CUTS))
    return Condition(attribute, operator, value)


RULES = st.lists(conditions(), max_size=3).map(lambda cs: Rule(tuple(cs)))
ORS = st.lists(RULES, min_size=1, max_size=4).map(AnyOf.of)


def rows_matching(rule) -> np.ndarray:
    return np.array([rule.matches(row) for row in FRAME.to_dict("records")])


def mask(rule) -> np.ndarray:
    return np.zeros(len(FRAME), bool) if rule is None else rule.mask(FRAME)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ORS, ORS)
def test_both_matches_the_rows_both_rules_match(a, b):
    combined = both(a, b)
    assert (mask(combined) == (a.mask(FRAME) & b.mask(FRAME))).all()
    if combined is not None:
        assert (rows_matching(combined) == mask(combined)).all()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(RULES, min_size=1, max_size=5))
def test_any_of_matches_the_rows_any_rule_matches(rules):
    union = AnyOf.of(rules)
    expected = np.logical_or.reduce([r.mask(FRAME) for r in rules])
    assert (union.mask(FRAME) == expected).all()
    assert (rows_matching(union) == expected).all()
    assert len(union.rules if isinstance(union, AnyOf) else [union]) <= len(set(rules))


NUMBERS = FRAME["x"].map(lambda v: v is None or isinstance(v, float | int)) & \
    FRAME["y"].map(lambda v: v is None or isinstance(v, float | int))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(RULES, min_size=1, max_size=5))
def test_collapse_for_numbers_matches_on_numbers_and_missing_values(rules):
    # the reading form (report.rules.readable): exact where every value is a number or missing
    parts = collapse(rules, numbers=True)
    expected = np.logical_or.reduce([r.mask(FRAME) for r in rules])
    got = np.logical_or.reduce([r.mask(FRAME) for r in parts])
    assert (got[NUMBERS.to_numpy()] == expected[NUMBERS.to_numpy()]).all()
    assert len(parts) <= len(rules)


def test_shorter_forms():
    d, b = Condition("device", "ONE_OF", ["desktop", "tablet"]), Condition("noise", "ONE_OF", ["B"])
    assert both(Rule((d, b)), Rule((Condition("device", "NOT_ONE_OF", ["desktop"]),))).describe() == \
        "device ONE_OF {tablet} AND noise ONE_OF {B}"
    cut = [Condition("r", "LTE", 7.7), Condition("r", "GT", 3), Condition("r", "LTE", 5)]
    assert both(Rule(cut[:1]), Rule(cut[1:])).describe() == "r > 3 AND r <= 5"
    assert both(Rule(cut[:1]), Rule((Condition("r", "GT", 7.7),))) is None  # nobody is both
    assert both(Rule((Condition("r", "IS_NULL", True),)), Rule(cut[1:2])) is None
    assert both(Rule((Condition("r", "IS_NULL", False),)), Rule(cut[1:2])).describe() == "r > 3"
    parts = [Rule((d, Condition("n", "ONE_OF", ["B"]))), Rule((d, Condition("n", "NOT_ONE_OF", ["B"]))),
             Rule((d, Condition("n", "IS_NULL", True)))]
    assert AnyOf.of(parts) == Rule((d,))
    assert AnyOf.of([Rule((d,)), Rule((d, b))]) == Rule((d,))  # the narrower part is implied
    # bounds on opposite sides do not collapse: a value that is no number meets neither "<= t" nor "> t"
    bounds = [Rule((Condition("r", "LTE", 3),)), Rule((Condition("r", "GT", 3),))]
    assert isinstance(AnyOf.of(bounds), AnyOf)
    assert collapse(bounds, numbers=True) == [Rule((Condition("r", "IS_NULL", False),))]  # numbers only
    gap = [Rule((Condition("r", "LTE", 3),)), Rule((Condition("r", "GT", 5),))]
    assert collapse(gap, numbers=True) == gap
    # on one side, the looser bound: exact for any value
    assert AnyOf.of([Rule((Condition("r", "LTE", 3),)), Rule((Condition("r", "LT", 5),))]) == \
        Rule((Condition("r", "LT", 5),))
    assert AnyOf.of([Rule((Condition("r", "GT", 3),)), Rule((Condition("r", "GTE", 3),))]) == \
        Rule((Condition("r", "GTE", 3),))
    # two intervals that overlap or touch are one interval, exact for any value
    r = {op: lambda v, op=op: Condition("r", op, v) for op in ("LT", "LTE", "GT", "GTE")}
    assert AnyOf.of([Rule((r["LTE"](3),)), Rule((r["GT"](3), r["LTE"](5)))]) == Rule((r["LTE"](5),))
    assert AnyOf.of([Rule((d, r["GT"](1), r["LT"](3))), Rule((d, r["GTE"](2), r["LTE"](5)))]) == \
        Rule((d, r["GT"](1), r["LTE"](5)))
    assert AnyOf.of([Rule((r["GT"](1), r["LT"](3))), Rule((r["GT"](3), r["LTE"](5)))]) == \
        AnyOf((Rule((r["GT"](1), r["LT"](3))), Rule((r["GT"](3), r["LTE"](5)))))  # 3 is in neither
    assert AnyOf.of([Rule((r["LTE"](3),)), Rule((r["GT"](3), r["LTE"](5))), Rule((r["GT"](5),))]) == \
        AnyOf((Rule((r["LTE"](5),)), Rule((r["GT"](5),))))  # numbers only: not the whole line
    assert collapse([Rule((r["LTE"](3),)), Rule((r["GT"](3), r["LTE"](5))), Rule((r["GT"](5),))],
                    numbers=True) == [Rule((Condition("r", "IS_NULL", False),))]


BOUNDS = st.tuples(st.sampled_from(["GT", "GTE", "LT", "LTE"]), st.sampled_from([1, 2.5, 3, 5]))
INTERVALS = st.lists(BOUNDS, min_size=1, max_size=2).map(
    lambda bounds: Rule(tuple(Condition("x", op, v) for op, v in bounds)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(INTERVALS, min_size=2, max_size=4), st.sampled_from([(), (Condition("y", "ONE_OF", ["a"]),)]))
def test_any_of_unites_numeric_intervals_exactly(intervals, shared):
    # adjacent and overlapping ranges of one attribute (the tree's cuts), beside a shared condition
    rules = [Rule((*shared, *r.conditions)) for r in intervals]
    union = AnyOf.of(rules)
    expected = np.logical_or.reduce([r.mask(FRAME) for r in rules])
    assert (union.mask(FRAME) == expected).all()
    assert (rows_matching(union) == expected).all()

