"""Segment rules as a person reads them: ``device = mobile`` rather than
``device NOT_ONE_OF {tablet, desktop}``, ``3 <= visits < 8`` rather than two conditions.

The readable form is exact for the values seen in the data (a NOT_ONE_OF is restated as the
levels it keeps; a number cut both ways, ``(d and x <= 3) or (d and x > 3)``, reads ``d and x IS NOT
NULL``, exact for the numbers and missing values a numeric column holds); the report shows the exact
rule beside it (on hover and in a details column), because a value never seen would match the
NOT_ONE_OF but not its restatement, and a value that is no number meets neither cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from sortition.rules import AnyOf, Condition, Rule
from sortition.rules.algebra import collapse
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


def _conjunctions(rule: Rule | AnyOf) -> tuple[Rule, ...]:
    """A segment's rules: one conjunction, or the several of an OR."""
    return rule.rules if isinstance(rule, AnyOf) else (rule,)


def set_columns(rules: Sequence[Rule | AnyOf | None]) -> list[str]:
    """Columns that some rule compares with ONE_OF / NOT_ONE_OF."""
    return sorted(
        {
            c.attribute
            for r in rules
            if r is not None
            for part in _conjunctions(r)
            for c in part.conditions
            if c.operator in ("ONE_OF", "NOT_ONE_OF")
        }
    )


def readable(rule: Rule | AnyOf | None, observed: Mapping[str, Sequence[str]] | None = None) -> str:
    """The rule in plain words; ``observed`` (from :func:`levels`) turns exclusions into inclusions.
    An OR segment reads as its conjunctions joined by "or"."""
    if isinstance(rule, AnyOf):
        parts = collapse(list(rule.rules), numbers=True)
        if len(parts) == 1:
            return readable(parts[0], observed)
        texts = [readable(part, observed) for part in parts]
        return " or ".join(f"({t})" if len(part.conditions) > 1 else t for t, part in zip(texts, parts))
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
