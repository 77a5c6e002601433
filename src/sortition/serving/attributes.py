"""Subject and action attributes: a flat dict, or the caller's own numeric/categorical grouping."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sortition.serving.conditions import js_string


@dataclass(frozen=True, slots=True)
class Attributes:
    """Attributes split into a numeric and a categorical group.

    Values stay as the caller gave them; the bandit scorer reads a numeric-group value only if
    it is a finite int/float (anything else counts as missing) and stringifies categorical-group
    values the JavaScript way (``303 -> "303"``, ``True -> "true"``; ``None`` is missing).

    Build from a flat dict with :meth:`from_flat`: int/float go to ``numeric``, str/bool to
    ``categorical``, ``None`` is dropped.
    """

    numeric: Mapping[str, Any] = field(default_factory=dict)
    categorical: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_flat(cls, attributes: Mapping[str, Any] | None) -> Attributes:
        numeric: dict[str, Any] = {}
        categorical: dict[str, Any] = {}
        if attributes:
            for key, value in attributes.items():
                kind = value.__class__
                if kind is str or kind is bool:
                    categorical[key] = value
                elif kind is float or kind is int:
                    numeric[key] = value
                elif value is None:
                    continue
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    numeric[key] = value
                else:
                    categorical[key] = value
        return cls(numeric, categorical)

    @classmethod
    def coerce(cls, value: Attributes | Mapping[str, Any] | None) -> Attributes:
        """``value`` itself if already :class:`Attributes`, else :meth:`from_flat`."""
        if isinstance(value, Attributes):
            return value
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(
                f"attributes must be a dict or Attributes, got {type(value).__name__}"
            )
        return cls.from_flat(value)

    def flat(self) -> dict[str, Any]:
        """One dict for flag rules (numeric first, categorical overriding a shared key)."""
        merged = dict(self.numeric)
        merged.update(self.categorical)
        return merged

    def numeric_clean(self) -> dict[str, float]:
        """The numeric group with missing (non-finite, non-numeric) values left out."""
        return {k: float(v) for k, v in self.numeric.items() if numeric_value(v) is not None}

    def categorical_clean(self) -> dict[str, str]:
        """The categorical group stringified the JS way, ``None`` left out."""
        return {k: js_string(v) for k, v in self.categorical.items() if v is not None}


def numeric_value(value: Any) -> float | None:
    """A finite number from a numeric-group value, else ``None`` (missing; an int beyond float
    range too: it is this attribute that is missing, the rest of the request is unaffected)."""
    if value.__class__ is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:
        return None


def categorical_value(value: Any) -> str | None:
    """A string from a categorical-group value (JS ``String(v)``), ``None`` when missing."""
    if value.__class__ is str:
        return value
    if value is None:
        return None
    return js_string(value)
