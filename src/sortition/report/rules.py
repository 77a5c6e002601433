"""Segment rules as a person reads them: ``device = mobile`` rather than
``device NOT_ONE_OF {tablet, desktop}``, ``3 <= visits < 8`` rather than two conditions.

The readable form is exact for the values seen in the data (a NOT_ONE_OF is restated as the
levels it keeps); the report shows the exact rule beside it (on hover and in a details column),
because a value never seen would match the NOT_ONE_OF but not its restatement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from sortition.rules import Condition, Rule
from sortition.serving.conditions import js_string

_LOWER = {"GT": ">", "GTE": ">="}
_UPPER = {"LT": "<", "LTE": "<="}
_FLIP = {">": "<", ">=": "<="}


def levels(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The observed (non-missing) values of ``columns`` as the rules spell them (JavaScript strings)."""
    out = {}
    for col in columns:
        if col in frame.columns:
            values = frame[col].dropna().unique()
            out[col] = tuple(sorted({js_string(v.item() if hasattr(v, "item") else v) for v in values}))
    return out


def set_columns(rules: Sequence[Rule | None]) -> list[str]:
    """Columns that some rule compares with ONE_OF / NOT_ONE_OF."""
    return sorted(
        {
            c.attribute
            for r in rules
            if r is not None
            for c in r.conditions
            if c.operator in ("ONE_OF", "NOT_ONE_OF")
        }
    )


def readable(rule: Rule | None, observed: Mapping[str, Sequence[str]] | None = None) -> str:
    """The rule in plain words; ``observed`` (from :func:`levels`) turns exclusions into inclusions."""
    if rule is None or not rule.conditions:
        return "everyone"
    observed = observed or {}
    parts: list[str] = []
    bounds: dict[str, list[Condition]] = {}
    for c in rule.conditions:
        if c.operator in _LOWER or c.operator in _UPPER:
            if c.attribute not in bounds:
                parts.append(c.attribute)  # placeholder keeps the rule's order
                bounds[c.attribute] = []
            bounds[c.attribute].append(c)
        elif c.operator in ("ONE_OF", "NOT_ONE_OF"):
            parts.append(_set_text(c, observed.get(c.attribute)))
        else:
            parts.append(c.describe())
    return " and ".join(_range_text(p, bounds[p]) if p in bounds else p for p in parts)


def _set_text(c: Condition, seen: Sequence[str] | None) -> str:
    values = list(c.value)
    keep = c.operator == "ONE_OF"
    if not keep and seen:
        rest = [v for v in seen if v not in set(values)]
        if rest and len(rest) <= len(values):
            values, keep = rest, True
    if len(values) == 1:
        return f"{c.attribute} {'=' if keep else '≠'} {values[0]}"
    joined = ", ".join(values)
    return f"{c.attribute} {'in' if keep else 'not in'} {{{joined}}}"


def _range_text(name: str, conditions: list[Condition]) -> str:
    lower = [c for c in conditions if c.operator in _LOWER]
    upper = [c for c in conditions if c.operator in _UPPER]
    if len(lower) == 1 and len(upper) == 1:
        lo, hi = lower[0], upper[0]
        return (
            f"{js_string(lo.value)} {_FLIP[_LOWER[lo.operator]]} {name} "
            f"{_UPPER[hi.operator]} {js_string(hi.value)}"
        )
    return " and ".join(c.describe() for c in conditions)
