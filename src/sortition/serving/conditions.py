"""The one implementation of flag-rule conditions (Eppo UFC semantics).

Every place that decides whether a subject satisfies a condition -- flag evaluation at
request time, segment rules matched online, and (by a property test) the vectorized masks
of ``sortition.rules`` -- goes through :func:`compile_condition`.

A condition is compiled once, when a configuration is loaded, into a predicate over the
attribute's value (``None`` meaning "missing"). Predicates never raise.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from sortition.serving.regex import PatternError, compile_search

logger = logging.getLogger("sortition.serving")

OPERATORS = (
    "ONE_OF",
    "NOT_ONE_OF",
    "GT",
    "GTE",
    "LT",
    "LTE",
    "MATCHES",
    "NOT_MATCHES",
    "IS_NULL",
)
COMPARISON_OPERATORS = frozenset({"GT", "GTE", "LT", "LTE"})

Predicate = Callable[[Any], bool]


def js_string(value: Any) -> str:
    """Stringify like JavaScript's ``String(value)``: ``True -> "true"``, ``1.0 -> "1"``.

    Used wherever an attribute is compared as a string (ONE_OF, MATCHES) and for numbers
    given in a bandit's categorical group.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) < 10**21:
            return str(value)
        try:
            return js_number_string(float(value))
        except OverflowError:  # Number(10**400) is Infinity in JavaScript
            return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, float):
        return js_number_string(value)
    if value is None:
        return "null"
    return str(value)


def js_number_string(x: float) -> str:
    """ECMAScript Number::toString(10) for a float (shortest round-trip digits)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number_string(-x)
    sign, digit_tuple, exponent = Decimal(repr(float(x))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    # repr may carry trailing zeros ("100.0"); fold them into the exponent.
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    if k == 1:
        return digits + exp
    return digits[0] + "." + digits[1:] + exp


_NUMERIC_STRING = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def to_number(value: Any) -> float | None:
    """A finite float from a number or a numeric string; ``None`` otherwise (booleans too)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # beyond float range: not a finite number
            return None
    elif isinstance(value, str) and _NUMERIC_STRING.match(value):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None


_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)


def parse_semver(value: Any) -> tuple | None:
    """A sortable key for a strict semver string (build metadata ignored), else ``None``.

    Precedence per semver.org: a pre-release sorts before its release; numeric identifiers
    sort numerically and before alphanumeric ones; a shorter identifier list sorts first.
    """
    if not isinstance(value, str):
        return None
    match = _SEMVER.match(value)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        pre_key: tuple = (1,)
    else:
        pre_key = (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return (int(major), int(minor), int(patch), pre_key)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
}


def _never(_: Any) -> bool:
    return False


def compile_condition(operator: str, value: Any) -> Predicate:
    """Compile one condition into a predicate over the attribute value (``None`` = missing).

    Args:
        operator: one of :data:`OPERATORS`.
        value: the condition value as in the configuration: a list of strings for
            ONE_OF / NOT_ONE_OF, a number or string for comparisons, a pattern for MATCHES,
            a boolean for IS_NULL.

    Raises:
        ValueError: for an unknown operator or a value of the wrong shape. A regex RE2 cannot
            compile does not raise: the condition is false for everyone (as in Eppo's Rust core);
            see :mod:`sortition.serving.regex`.
    """
    if operator in ("ONE_OF", "NOT_ONE_OF"):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ValueError(f"{operator} needs a list of values, got {type(value).__name__}")
        members = frozenset(js_string(v) for v in value)
        if operator == "ONE_OF":
            return lambda attr: attr is not None and (attr if attr.__class__ is str else js_string(attr)) in members
        return lambda attr: attr is not None and (attr if attr.__class__ is str else js_string(attr)) not in members
    if operator in COMPARISON_OPERATORS:
        compare = _COMPARE[operator]
        version = parse_semver(value)
        if version is not None:

            def semver_predicate(attr: Any) -> bool:
                other = parse_semver(attr)
                return other is not None and compare(other, version)

            return semver_predicate
        threshold = to_number(value)
        if threshold is None:
            return _never

        def numeric_predicate(attr: Any) -> bool:
            number = to_number(attr)
            if number is None and attr.__class__ is float and math.isinf(attr):
                number = attr  # +/-inf compares as a number (as in Eppo's SDKs); NaN never does
            return number is not None and compare(number, threshold)

        return numeric_predicate
    if operator in ("MATCHES", "NOT_MATCHES"):
        try:  # RE2: linear time for every pattern (sortition.serving.regex)
            search = compile_search(js_string(value))
        except PatternError as exc:
            logger.warning("regex %r in a %s condition cannot be used (%s): condition is false", value, operator, exc)
            return _never
        if operator == "MATCHES":
            return lambda attr: attr is not None and search(attr if attr.__class__ is str else js_string(attr))
        return lambda attr: attr is not None and not search(attr if attr.__class__ is str else js_string(attr))
    if operator == "IS_NULL":
        expect_null = _as_bool(value)
        return lambda attr: (attr is None) == expect_null
    raise ValueError(f"unknown operator {operator!r}; expected one of {', '.join(OPERATORS)}")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"IS_NULL needs a boolean value, got {value!r}")


def conditions_hold(predicates: Iterable[tuple[str, Predicate]], attributes: dict[str, Any]) -> bool:
    """True when every ``(attribute, predicate)`` holds for ``attributes`` (empty: True)."""
    return all(predicate(attributes.get(name)) for name, predicate in predicates)
