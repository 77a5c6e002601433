"""The one condition evaluator: JS stringification, numbers, semver, regex, null checks."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sortition.serving.conditions import compile_condition, js_string, parse_semver


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (303, "303"),
        (True, "true"),
        (False, "false"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (123456789.0, "123456789"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.00001, "0.00001"),
        (1.23456e-8, "1.23456e-8"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
        ("x", "x"),
    ],
)
def test_js_string_matches_javascript(value, expected):
    assert js_string(value) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_js_string_round_trips(x):
    assert float(js_string(x)) == x


def test_semver_precedence():
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
             "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.5.0", "1.10.0"]
    keys = [parse_semver(v) for v in order]
    assert keys == sorted(keys)
    assert parse_semver("1.5") is None and parse_semver("01.2.3") is None


def test_comparisons():
    gte = compile_condition("GTE", "1.5.0")
    assert gte("1.6.0-beta") and gte("1.5.0") and not gte("1.4.9") and not gte(1) and not gte(None)
    gt = compile_condition("GT", 10)
    assert gt("11") and gt(10.5) and not gt(10) and not gt("ten") and not gt(True) and not gt(math.nan)
    assert compile_condition("LT", "abc")(1) is False


def test_membership_and_null():
    one_of = compile_condition("ONE_OF", ["1", "true", "ios"])
    assert one_of(1.0) and one_of(True) and one_of("ios") and not one_of("android") and not one_of(None)
    not_one_of = compile_condition("NOT_ONE_OF", ["ios"])
    assert not_one_of("android") and not not_one_of("ios") and not not_one_of(None)
    assert compile_condition("IS_NULL", True)(None) and not compile_condition("IS_NULL", True)(0)
    assert compile_condition("IS_NULL", False)("") and not compile_condition("IS_NULL", False)(None)


def test_regex_is_unanchored_and_invalid_regex_is_false():
    assert compile_condition("MATCHES", "@example\\.com")("a@example.com")
    assert compile_condition("NOT_MATCHES", "^x")("yx")
    assert not compile_condition("MATCHES", "[")("[")
    assert not compile_condition("NOT_MATCHES", "[")("anything")


def test_unknown_operator_is_rejected():
    with pytest.raises(ValueError, match="unknown operator"):
        compile_condition("CONTAINS", "x")


def test_js_string_accepts_numpy_scalars():
    np = pytest.importorskip("numpy")
    assert js_string(np.float64(1.0)) == "1"
    assert js_string(np.float64(0.5)) == "0.5"
    assert compile_condition("ONE_OF", ["1"])(np.float64(1.0))
