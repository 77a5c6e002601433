"""Exact rewrites of rule conjunctions and disjunctions into shorter ones (``AnyOf.of``, ``both``).

Each rewrite matches exactly the subjects the long form matches, under the flag format's semantics: a
missing value satisfies only ``IS NULL``, set conditions compare JS-spelled strings, numeric bounds compare
numbers (held to the long forms by tests/policy/test_rule_algebra.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from sortition.rules.condition import Condition
from sortition.rules.rule import Rule


def collapse(parts: list[Rule], *, numbers: bool = False) -> list[Rule]:
    """An equivalent, shorter OR of ``parts`` (the first of each merged pair keeps its place).

    A part whose conditions include all of another's is implied by it and dropped. Two parts with the same
    conditions but on one attribute, one condition each there, merge when those two conditions have an OR in
    one condition (:func:`_either`): ``(d AND x ONE_OF {a}) OR (d AND x NOT_ONE_OF {a}) OR (d AND x IS NULL)``
    is ``d``. With ``numbers``, the attributes that numeric bounds compare are taken to hold numbers or
    nothing (a numeric column), so ``x <= t OR x > t`` is ``x IS NOT NULL``: exact on such values only (a
    value that is no number meets neither bound); for reading, never for serving.
    """
    parts = list(parts)
    changed = True
    while changed and len(parts) > 1:
        changed = False
        for i, j in ((i, j) for i in range(len(parts)) for j in range(len(parts)) if i != j):
            a, b = parts[i], parts[j]
            if set(a.conditions) <= set(b.conditions):  # b implies a
                del parts[j]
                changed = True
                break
            merged = _merge_pair(a, b, numbers)
            if merged is not None:
                parts[i] = merged
                del parts[j]
                changed = True
                break
    return parts


def _merge_pair(a: Rule, b: Rule, numbers: bool = False) -> Rule | None:
    """The one conjunction equal to ``a OR b`` when they differ on one attribute only (:func:`collapse`)."""
    only_a = [c for c in a.conditions if c not in b.conditions]
    only_b = [c for c in b.conditions if c not in a.conditions]
    if not only_a or not only_b or len({c.attribute for c in (*only_a, *only_b)}) != 1:
        return None
    either = _either(only_a, only_b, numbers)
    if either is False:
        return None
    shared = [c for c in a.conditions if c not in only_a]
    at = a.conditions.index(only_a[0])
    return Rule((*shared[:at], *either, *shared[at:]))


def _either(x: list[Condition], y: list[Condition], numbers: bool = False) -> tuple[Condition, ...] | bool:
    """Conditions matching what ``AND(x) OR AND(y)`` (all on one attribute) matches; ``()``: any value,
    missing too; False: no such conditions. ``numbers``: see :func:`collapse`."""
    attribute = x[0].attribute
    present = Condition(attribute, "IS_NULL", False)
    if all(c.operator in _BOUNDS and _finite(c.value) for c in (*x, *y)):
        return _either_interval(x, y, (present,) if numbers else False)
    if len(x) != 1 or len(y) != 1:
        return False
    x, y = x[0], y[0]
    ops = {x.operator, y.operator}
    if ops == {"IS_NULL"}:
        return () if x.expects_null != y.expects_null else False
    if ops == {"ONE_OF"}:
        return (Condition(attribute, "ONE_OF", list(dict.fromkeys((*x.value, *y.value)))),)
    if ops == {"NOT_ONE_OF"}:
        common = [v for v in x.value if v in y.value]
        return (Condition(attribute, "NOT_ONE_OF", common) if common else present,)
    if ops == {"ONE_OF", "NOT_ONE_OF"}:
        one_of, not_one_of = (x, y) if x.operator == "ONE_OF" else (y, x)
        rest = [v for v in not_one_of.value if v not in one_of.value]
        return (Condition(attribute, "NOT_ONE_OF", rest) if rest else present,)
    return False


def _either_interval(x: list[Condition], y: list[Condition],
                     every_number: tuple[Condition, ...] | bool) -> tuple[Condition, ...] | bool:
    """``AND(x) OR AND(y)`` for two sets of finite numeric bounds on one attribute, each an interval: the
    interval they make together when they overlap or touch (``x <= 3 OR (x > 3 AND x <= 5)`` is ``x <= 5``;
    exact for any value: every bound reads the value as the same number, or none holds); ``every_number``
    when that is the whole line (``x IS NOT NULL`` for numeric columns, else False: a value that is no number
    meets no bound); with a gap, False. An empty interval adds nothing: the other stands."""
    (lo_x, hi_x), (lo_y, hi_y) = _tightest(x), _tightest(y)
    if _empty(lo_x, hi_x):
        return tuple(c for c in (lo_y, hi_y) if c is not None)
    if _empty(lo_y, hi_y):
        return tuple(c for c in (lo_x, hi_x) if c is not None)
    if _apart(hi_x, lo_y) or _apart(hi_y, lo_x):
        return False
    # the looser bound on each side; none where either interval is open there
    lower = None if None in (lo_x, lo_y) else min(lo_x, lo_y, key=lambda c: (c.value, -_LOWER[c.operator]))
    upper = None if None in (hi_x, hi_y) else max(hi_x, hi_y, key=lambda c: (c.value, _UPPER[c.operator]))
    if lower is None and upper is None:
        return every_number
    return tuple(c for c in (lower, upper) if c is not None)


def _tightest(bounds: Sequence[Condition]) -> tuple[Condition | None, Condition | None]:
    """The tightest lower and upper bound of finite numeric ``bounds`` (None: no bound on that side)."""
    lower = max((c for c in bounds if c.operator in _LOWER), key=lambda c: (c.value, -_LOWER[c.operator]),
                default=None)
    upper = min((c for c in bounds if c.operator in _UPPER), key=lambda c: (c.value, _UPPER[c.operator]),
                default=None)
    return lower, upper


def _empty(lower: Condition | None, upper: Condition | None) -> bool:
    """Whether no number meets both bounds (one interval)."""
    if upper is None or lower is None:
        return False
    return lower.value > upper.value or (lower.value == upper.value and not (
        _UPPER[upper.operator] and _LOWER[lower.operator]))


def _apart(upper: Condition | None, lower: Condition | None) -> bool:
    """Whether some number lies between an interval ending at ``upper`` and one starting at ``lower``."""
    if upper is None or lower is None:
        return False
    return lower.value > upper.value or (lower.value == upper.value and not (
        _UPPER[upper.operator] or _LOWER[lower.operator]))


_UPPER, _LOWER = {"LT": 0, "LTE": 1}, {"GT": 0, "GTE": 1}
_BOUNDS = {*_UPPER, *_LOWER}


def simplify(conditions: Sequence[Condition]) -> Rule | None:
    """The conjunction of ``conditions`` with one condition per attribute where the flag format allows
    (None when it can match no one), in the order attributes first appear.

    Set conditions combine (``ONE_OF A AND NOT_ONE_OF B`` is ``ONE_OF A - B``; NOT_ONE_OFs unite), numeric
    bounds keep the tightest on each side, ``IS NOT NULL`` is implied by any other condition, and ``IS NULL``
    contradicts one (a missing value satisfies only ``IS NULL``; the formats' semantics)."""
    by_attribute: dict[str, list[Condition]] = {}
    for condition in conditions:
        by_attribute.setdefault(condition.attribute, []).append(condition)
    out: list[Condition] = []
    for attribute, group in by_attribute.items():
        merged = _merge(attribute, list(dict.fromkeys(group)))
        if merged is None:
            return None
        out.extend(merged)
    return Rule(tuple(out))


def _merge(attribute: str, group: list[Condition]) -> list[Condition] | None:
    """One attribute's conditions of a conjunction, combined (see :func:`simplify`); None: contradictory."""
    if len(group) == 1:
        return group
    nulls = {c.expects_null for c in group if c.operator == "IS_NULL"}
    rest = [c for c in group if c.operator != "IS_NULL"]
    if True in nulls and (False in nulls or rest):
        return None
    if not rest:
        return group[:1]
    one_of = [set(c.value) for c in rest if c.operator == "ONE_OF"]
    not_one_of = set().union(*(c.value for c in rest if c.operator == "NOT_ONE_OF"))
    out: list[Condition] = []
    if one_of:
        values = set.intersection(*one_of) - not_one_of
        if not values:
            return None
        out.append(Condition(attribute, "ONE_OF", sorted(values, key=_first_seen(rest))))
    elif any(c.operator == "NOT_ONE_OF" for c in rest):  # NOT_ONE_OF {} still means "not missing"
        out.append(Condition(attribute, "NOT_ONE_OF", sorted(not_one_of, key=_first_seen(rest))))
    bounds = [c for c in rest if c.operator in _UPPER or c.operator in _LOWER]
    if all(_finite(c.value) for c in bounds):
        lower, upper = _tightest(bounds)
        if _empty(lower, upper):
            return None
        out.extend(c for c in (lower, upper) if c is not None)
    else:  # semver and number strings, infinite bounds (never true): left as they are
        out.extend(bounds)
    out.extend(c for c in rest if c.operator not in _UPPER and c.operator not in _LOWER
               and c.operator not in ("ONE_OF", "NOT_ONE_OF"))
    return out


def _finite(value: Any) -> bool:
    """Whether a comparison's value is a finite number (the bounds :func:`_merge` may combine)."""
    try:
        return isinstance(value, (int, float)) and math.isfinite(float(value))
    except OverflowError:
        return False


def _first_seen(conditions: Sequence[Condition]) -> Callable[[str], int]:
    """Sort key: a set value's first position among ``conditions``' values (the rules' own order)."""
    order: dict[str, int] = {}
    for condition in conditions:
        if condition.operator in ("ONE_OF", "NOT_ONE_OF"):
            for value in condition.value:
                order.setdefault(value, len(order))
    return order.__getitem__
