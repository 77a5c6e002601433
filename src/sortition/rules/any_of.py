"""``AnyOf``: a disjunction of rules, so one segment can be "x <= t OR x missing".

A UFC allocation's ``rules`` list is already an OR (the allocation matches when any rule does), so
``AnyOf.to_json()`` is that list and a segment holding several rules exports as one allocation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sortition.rules.algebra import collapse, simplify
from sortition.rules.rule import Rule


@dataclass(frozen=True)
class AnyOf:
    """Rows (or a subject) matching at least one of ``rules`` (two or more conjunctions)."""

    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        if len(rules) < 2 or not all(isinstance(r, Rule) for r in rules):
            raise ValueError(f"AnyOf needs two or more Rules, got {list(rules)!r}")
        object.__setattr__(self, "rules", rules)

    @classmethod
    def of(cls, rules: Sequence[Rule | AnyOf]) -> Rule | AnyOf:
        """The OR of ``rules``, written short (:func:`~sortition.rules.algebra.collapse`: nested AnyOf
        flattened, repeats and parts another implies dropped, two parts that differ on one attribute merged);
        a single rule stays a Rule."""
        flat: list[Rule] = []
        for rule in rules:
            for part in (rule.rules if isinstance(rule, AnyOf) else (rule,)):
                if part not in flat:
                    flat.append(part)
        flat = collapse(flat)
        return flat[0] if len(flat) == 1 else cls(tuple(flat))

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Request time: whether any rule matches (never raises)."""
        return any(rule.matches(attributes) for rule in self.rules)

    def mask(self, frame_or_data: Any, _memo: dict | None = None):
        """Offline: boolean mask ``(n,)`` of the rows matching any rule (see :meth:`Rule.mask`)."""
        memo = {} if _memo is None else _memo
        out = self.rules[0].mask(frame_or_data, memo)
        for rule in self.rules[1:]:
            out = out | rule.mask(frame_or_data, memo)
        return out

    def describe(self) -> str:
        """``(device ONE_OF {mobile} AND recency > 3) OR recency IS_NULL``."""
        parts = [rule.describe() for rule in self.rules]
        return " OR ".join(f"({p})" if len(rule.conditions) > 1 else p for p, rule in zip(parts, self.rules))

    def __str__(self) -> str:
        return self.describe()

    def to_json(self) -> list[dict[str, Any]]:
        """The UFC allocation's ``rules`` list."""
        return [rule.to_json() for rule in self.rules]

    @classmethod
    def from_json(cls, obj: list) -> AnyOf:
        return cls(tuple(Rule.from_json(r) for r in obj))


def both(a: Rule | AnyOf, b: Rule | AnyOf) -> Rule | AnyOf | None:
    """Rows (or a subject) matching ``a`` and ``b``: the OR of every pairwise conjunction of their rules (an
    AND of ORs distributed), each conjunction written by :func:`~sortition.rules.algebra.simplify`; None when
    nobody can match."""
    parts = [simplify((*x.conditions, *y.conditions))
             for x in (a.rules if isinstance(a, AnyOf) else (a,))
             for y in (b.rules if isinstance(b, AnyOf) else (b,))]
    parts = [part for part in parts if part is not None]
    return AnyOf.of(parts) if parts else None


def rule_from_json(obj: Any) -> Rule | AnyOf:
    """A segment rule from its JSON: ``{"conditions": [...]}`` (a Rule) or a list of them (an AnyOf)."""
    if isinstance(obj, list) and obj and all(isinstance(r, Mapping) and "conditions" in r for r in obj):
        rules = [Rule.from_json(r) for r in obj]
        return rules[0] if len(rules) == 1 else AnyOf(tuple(rules))  # as written, not rewritten shorter
    return Rule.from_json(obj)
