"""One rule language offline and online: a segment's rule is a conjunction of flag-format
conditions. ``Rule.mask`` evaluates it over a frame (vectorized); ``Rule.matches`` evaluates it for
one subject at request time through :func:`sortition.serving.conditions.compile_condition`. ``AnyOf``
is a disjunction of rules (a UFC allocation's ``rules`` list), for segments such as "x <= t OR x missing"."""

from sortition.rules.any_of import AnyOf, both, rule_from_json
from sortition.rules.condition import RULE_OPERATORS, Condition
from sortition.rules.rule import Rule

__all__ = ["RULE_OPERATORS", "AnyOf", "Condition", "Rule", "both", "rule_from_json"]
