"""Strict reading of configuration documents: one error type that names the JSON path.

Every malformed flags or bandit-models document raises :class:`ConfigurationError` (a
``ValueError``), never ``TypeError``, ``OverflowError`` or ``RecursionError``, so a poller that
catches ``ValueError`` keeps serving its previous configuration. Types are as strict as Eppo's
format: a boolean field must be a JSON boolean (``"enabled": "false"`` is refused, not read as
true), a whole number must be an integer, numbers must be finite and within float range.

Limits (documented in docs/serving.md): a document of at most :data:`MAX_DOCUMENT_BYTES`, nested
at most :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # 64 MiB: a UFC file with thousands of flags is a few MB
MAX_DEPTH = 64  # a UFC flag nests ~10 levels; JSON variation values get the rest


class ConfigurationError(ValueError):
    """A malformed configuration. ``path`` is the JSON path of the bad field
    (``flags.f.allocations[0].rules[0].conditions[0].operator``), ``reason`` what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def show(value: Any) -> str:
    """A short repr of a bad value for an error message."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ (or a huge int) must not hide the error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def load_document(data: str | bytes | Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """A JSON object from text (size-checked) or a dict (depth-checked).

    Raises:
        ConfigurationError: not JSON, too large, too deep, or not an object at the top.
        TypeError: ``data`` is not str, bytes or a mapping (a programming error, not a document).
    """
    if isinstance(data, Mapping):
        check_depth(data, path)
        return data
    if not isinstance(data, (str, bytes, bytearray)):
        raise TypeError(f"{path}: expected str, bytes or dict, got {type(data).__name__}")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ConfigurationError(path, f"document is {len(data):,} bytes; the limit is {MAX_DOCUMENT_BYTES:,}")
    try:
        parsed = json.loads(data)
    except RecursionError:
        raise ConfigurationError(path, f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigurationError(path, f"not valid JSON ({exc})") from None
    if not isinstance(parsed, Mapping):
        raise ConfigurationError(path, f"expected a JSON object at the top, got {type(parsed).__name__}")
    check_depth(parsed, path)
    return parsed


def check_depth(value: Any, path: str, limit: int = MAX_DEPTH) -> None:
    """Refuse containers nested deeper than ``limit`` (iterative: no recursion, cycles caught)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ConfigurationError(path, f"nested deeper than {limit} levels")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (Mapping, list, tuple)))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (Mapping, list, tuple)))


def obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(path, f"expected an object, got {show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigurationError(path, f"keys must be strings, got {show(key)}")
    return value


def arr(value: Any, path: str, *, null_ok: bool = False) -> list:
    if value is None and null_ok:
        return []
    if not isinstance(value, list):
        raise ConfigurationError(path, f"expected a list, got {show(value)}")
    return value


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(path, f"expected a string, got {show(value)}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(path, f"expected true or false, got {show(value)}")
    return value


def whole(value: Any, path: str) -> int:
    """An integer (a float with an integral value is accepted, as JSON writers emit ``10000.0``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(path, f"expected a whole number, got {show(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ConfigurationError(path, f"expected a whole number, got {show(value)}")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ConfigurationError(path, "whole number out of range (must fit 64 bits)")
    return int(value)


def number(value: Any, path: str) -> float:
    """A finite float (an int beyond float range is refused, not an OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(path, f"expected a finite number, got {show(value)}")
    try:
        result = float(value)
    except OverflowError:
        raise ConfigurationError(path, "number out of float range") from None
    if not math.isfinite(result):
        raise ConfigurationError(path, f"expected a finite number, got {show(value)}")
    return result
