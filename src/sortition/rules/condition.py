"""``Condition(attribute, operator, value)``: one flag-format condition.

Request-time matching goes through :func:`sortition.serving.conditions.compile_condition` (the one
implementation of condition semantics); the vectorized column masks live in
:mod:`sortition.serving.column_masks` (shared with columnar scoring) and are held to it by a property test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sortition.serving.column_masks import normalize_attribute
from sortition.serving.conditions import OPERATORS, Predicate, compile_condition, js_string

RULE_OPERATORS = OPERATORS
_SET_OPERATORS = frozenset({"ONE_OF", "NOT_ONE_OF"})
_SYMBOLS = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}


@dataclass(frozen=True)
class Condition:
    """One condition of a rule, in the flag-configuration format.

    Args:
        attribute: the subject attribute (offline: the covariate column) it reads.
        operator: one of ONE_OF, NOT_ONE_OF, GT, GTE, LT, LTE, IS_NULL (and MATCHES,
            NOT_MATCHES, which the flag format also has).
        value: a list of values for ONE_OF / NOT_ONE_OF (stored as a tuple of strings, as the
            format compares strings), a number or semver string for comparisons, a boolean for
            IS_NULL, a regex for MATCHES.

    Missing attribute values (None, NaN, pandas NA) satisfy only ``IS_NULL true``.
    """

    attribute: str
    operator: str
    value: Any
    _predicate: Predicate = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute:
            raise ValueError(f"Condition.attribute must be a non-empty string, got {self.attribute!r}")
        if self.operator not in RULE_OPERATORS:
            raise ValueError(
                f"Condition.operator {self.operator!r} for attribute {self.attribute!r} is unknown; "
                f"use one of {', '.join(RULE_OPERATORS)}"
            )
        value = self.value
        if self.operator in _SET_OPERATORS:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(
                    f"Condition {self.attribute} {self.operator} needs a list of values, got {value!r}"
                )
            value = tuple(js_string(normalize_attribute(v)) for v in value)
        elif self.operator in _SYMBOLS:
            value = normalize_attribute(value)
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(
                    f"Condition {self.attribute} {self.operator} needs a number (or semver string), "
                    f"got {self.value!r}"
                )
        try:
            predicate = compile_condition(self.operator, list(value) if isinstance(value, tuple) else value)
        except ValueError as exc:
            raise ValueError(f"Condition on {self.attribute!r}: {exc}") from None
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_predicate", predicate)

    def matches(self, attributes: dict[str, Any]) -> bool:
        """Whether a subject's attributes satisfy the condition (never raises)."""
        try:
            return bool(self._predicate(normalize_attribute(attributes.get(self.attribute))))
        except Exception:  # request-time evaluation never raises
            return False

    def describe(self) -> str:
        """``device ONE_OF {mobile, tablet}``, ``recency_days > 3.5``, ``age IS NULL``."""
        name, op, value = self.attribute, self.operator, self.value
        if op in _SET_OPERATORS:
            return f"{name} {op} {{{', '.join(value)}}}"
        if op in _SYMBOLS:
            return f"{name} {_SYMBOLS[op]} {js_string(value)}"
        if op == "IS_NULL":
            return f"{name} IS NULL" if self.expects_null else f"{name} IS NOT NULL"
        return f"{name} {op} /{value}/"

    @property
    def expects_null(self) -> bool:
        """For an IS_NULL condition, whether it asks for a missing value (its value is true or "true")."""
        value = self.value
        return value if isinstance(value, bool) else str(value).lower() == "true"

    def to_json(self) -> dict[str, Any]:
        """The flag-configuration form ``{"attribute", "operator", "value"}``."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"attribute": self.attribute, "operator": self.operator, "value": value}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Condition:
        if not isinstance(obj, dict) or not {"attribute", "operator", "value"} <= obj.keys():
            raise ValueError(
                f"a condition needs the keys attribute, operator and value; got {obj!r}"
            )
        return cls(obj["attribute"], obj["operator"], obj["value"])
