"""Flag-rule conditions over whole columns: the vectorized twin of
:func:`~sortition.serving.conditions.compile_condition`'s predicates.

One implementation of "which rows satisfy this condition", used by the columnar scoring calls
(:mod:`sortition.serving.columnar`) and by offline segment rules (``sortition.rules``); property
tests hold it to the request-time predicate row by row.

A row's value is what the single call would see in that subject's attribute dict: missing
(``None``) where the column is null **or a float NaN** (the table's missing marker), otherwise the
Python scalar (``int`` for integer columns, ``float``, ``bool``, ``str``). Strings are dictionary
encoded, so a predicate runs once per distinct value; numbers and booleans take numpy paths that
restate the predicate's semantics (JS spellings for ONE_OF, numeric thresholds for comparisons).

Only the columnar paths import this module (numpy and pyarrow are imported here).
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sortition.serving.conditions import COMPARISON_OPERATORS, Predicate, js_number_string, js_string, \
    parse_semver, to_number
from sortition.serving.regex import PatternError, compile_search

FLOAT, INT, BOOL, STRING, OBJECT = "float", "int", "bool", "string", "object"

_INT_STRING = re.compile(r"^-?(0|[1-9]\d*)$")
_COMPARE = {"GT": np.greater, "GTE": np.greater_equal, "LT": np.less, "LTE": np.less_equal}
_REGEX_SPECIAL = frozenset("\\.^$*+?{}[]|()")
# Distinct strings above which set membership and literal patterns run in Arrow, not Python.
_ARROW_LEVELS = 64


class Column:
    """One attribute over ``n`` rows.

    Attributes:
        kind: FLOAT (``values`` float64), INT (int64), BOOL (bool), STRING (``values`` are intp
            codes into ``levels``, -1 where missing) or OBJECT (``values`` an object array of
            Python scalars, ``None`` where missing).
        values: shape ``(n,)``.
        missing: bool, shape ``(n,)``: the single call would see ``None``.
        levels: STRING only: the distinct strings (a pyarrow string array).
        raw: STRING only, when built from a plain string array: that array. Set operations and
            patterns run on it directly, so a column of mostly distinct strings (e-mails, keys)
            is never dictionary-encoded for them; ``values`` / ``levels`` are encoded on first use.
    """

    __slots__ = ("kind", "missing", "raw", "_values", "_levels")

    def __init__(self, kind: str, values: np.ndarray | None, missing: np.ndarray,
                 levels: pa.Array | None = None, raw: pa.Array | None = None) -> None:
        self.kind, self.missing, self.raw, self._values, self._levels = kind, missing, raw, values, levels

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            self._encode()
        return self._values

    @property
    def levels(self) -> pa.Array | None:
        if self._levels is None and self.raw is not None:
            self._encode()
        return self._levels

    def _encode(self) -> None:
        encoded = pc.dictionary_encode(self.raw)
        self._values = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
        self._levels = encoded.dictionary

    def __len__(self) -> int:
        return len(self.missing)


def normalize_attribute(value: Any) -> Any:
    """The request-time view of one table value: missing (None, NaN, pandas NA/NaT) -> ``None``,
    numpy scalars -> the Python scalar, so offline rows and online requests read alike."""
    if value is None:
        return None
    if isinstance(value, float):
        # float() also unwraps numpy.float64, whose repr ("np.float64(1.0)") is not a number.
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
        return value
    pd = sys.modules.get("pandas")
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    return value


def object_column(values: list[Any]) -> Column:
    """A column of arbitrary Python values (normalized with :func:`normalize_attribute`)."""
    clean = [normalize_attribute(v) for v in values]
    array = np.empty(len(clean), dtype=object)
    array[:] = clean
    missing = np.fromiter((v is None for v in clean), dtype=bool, count=len(clean))
    return Column(OBJECT, array, missing)


def column_from_arrow(array: pa.Array | pa.ChunkedArray) -> Column:
    """The :class:`Column` of an Arrow array (any type; unusual ones become OBJECT)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = array.type
    if pa.types.is_dictionary(kind):
        if _is_string_type(kind.value_type):
            codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
            missing = codes < 0
            return Column(STRING, codes, missing, array.dictionary.cast(pa.large_string()))
        return column_from_arrow(array.dictionary_decode())
    if _is_string_type(kind):
        raw = array.cast(pa.large_string())
        return Column(STRING, None, raw.is_null().to_numpy(zero_copy_only=False), raw=raw)
    missing = array.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(kind):
        x = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return Column(FLOAT, x, np.isnan(x))
    if pa.types.is_integer(kind) and kind != pa.uint64():
        return Column(INT, array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), missing)
    if pa.types.is_boolean(kind):
        return Column(BOOL, array.fill_null(False).to_numpy(zero_copy_only=False).astype(bool), missing)
    if pa.types.is_null(kind):
        return Column(FLOAT, np.full(len(array), np.nan), np.ones(len(array), dtype=bool))
    return object_column(array.to_pylist())


def column_from_values(values: Any) -> Column:
    """The :class:`Column` of a pandas Series, numpy array or list: through Arrow when its values
    share one type, else OBJECT (mixed types: each row as its Python scalar)."""
    dtype = getattr(values, "dtype", None)
    if dtype is None or dtype == object:
        # Arrow would coerce a mix (True -> 1.0 beside floats, big ints -> floats): keep the values.
        clean = [normalize_attribute(v) for v in values]
        kinds = {v.__class__ for v in clean if v is not None}
        if len(kinds) > 1 or not kinds <= {str, bool, int, float}:
            return object_column(clean)
        values = clean
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return object_column(list(values))
    return column_from_arrow(array)


def _is_string_type(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def condition_mask(column: Column, operator: str, value: Any, predicate: Predicate) -> np.ndarray:
    """Boolean mask ``(n,)``: ``predicate(row value)`` for every row of ``column``.

    Args:
        column: the attribute's values.
        operator: the condition's operator.
        value: the condition's plain value (a list for ONE_OF / NOT_ONE_OF, a threshold, a
            pattern), or ``None`` when only ``predicate`` may be used (obfuscated sets).
        predicate: the request-time predicate compiled from the same condition: the semantics.
    """
    on_missing = bool(predicate(None))
    if operator == "IS_NULL":
        return column.missing.copy() if on_missing else ~column.missing
    kind = column.kind
    if kind == OBJECT:
        return np.fromiter((bool(predicate(v)) for v in column.values), dtype=bool, count=len(column))
    if kind == STRING:
        if column.raw is not None and value is not None and len(column) > _ARROW_LEVELS:
            per_row = _string_fast(column.raw, operator, value)
            if per_row is not None:
                return np.where(column.missing, on_missing, per_row)
        per_level = None
        if value is not None and len(column.levels) > _ARROW_LEVELS:
            per_level = _string_fast(column.levels, operator, value)
        if per_level is None:
            per_level = np.fromiter((bool(predicate(v)) for v in column.levels.to_pylist()), dtype=bool,
                                    count=len(column.levels))
        return np.append(per_level, on_missing)[column.values]
    if kind == BOOL:
        per_value = np.array([bool(predicate(False)), bool(predicate(True))])
        return np.where(column.missing, on_missing, per_value[column.values.astype(np.intp)])
    fast = None if value is None else _numeric_fast(column, operator, value)
    if fast is None:  # anything else: the predicate once per distinct number
        fast = _per_distinct_number(column, predicate)
    return np.where(column.missing, on_missing, fast)


def _string_fast(strings: pa.Array, operator: str, value: Any) -> np.ndarray | None:
    """ONE_OF / NOT_ONE_OF and MATCHES / NOT_MATCHES over strings, in Arrow: bool
    ``(len(strings),)`` (meaningless where null), or ``None`` for other operators."""
    if operator in ("ONE_OF", "NOT_ONE_OF"):
        members = pa.array(sorted({js_string(v) for v in value}), type=pa.large_string())
        listed = pc.is_in(strings, value_set=members).to_numpy(zero_copy_only=False)
        return listed if operator == "ONE_OF" else ~listed
    if operator in ("MATCHES", "NOT_MATCHES"):
        pattern = js_string(value)
        try:
            compile_search(pattern)
        except PatternError:  # refused at request time too: false for everyone, either operator
            return np.zeros(len(strings), dtype=bool)
        found = _search(strings, pattern)
        if found is not None:
            return found if operator == "MATCHES" else ~found
    return None


def _search(levels: pa.Array, pattern: str) -> np.ndarray | None:
    """``search(pattern, level)`` per level, in Arrow: the same engine (RE2, UTF-8) as the
    request-time predicate (:mod:`sortition.serving.regex`); ``None`` when Arrow declines."""
    try:
        if not _REGEX_SPECIAL.intersection(pattern):  # a literal: search is substring search
            return pc.fill_null(pc.match_substring(levels, pattern), False).to_numpy(zero_copy_only=False)
        return pc.fill_null(pc.match_substring_regex(levels, pattern), False).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _numeric_fast(column: Column, operator: str, value: Any) -> np.ndarray | None:
    """Comparisons and ONE_OF over a number column, restating the predicate (``None``: no fast path)."""
    x = column.values
    if operator in COMPARISON_OPERATORS:
        if parse_semver(value) is not None:  # a semver threshold never matches a number
            return np.zeros(len(x), dtype=bool)
        threshold = to_number(value)
        if threshold is None:
            return np.zeros(len(x), dtype=bool)
        with np.errstate(invalid="ignore"):  # +/-inf compare as numbers; NaN rows are missing
            return _COMPARE[operator](x.astype(np.float64), threshold)
    if operator in ("ONE_OF", "NOT_ONE_OF"):
        # A number matches a listed string exactly when the string is the number's JS spelling.
        members = [js_string(v) for v in value]
        if column.kind == INT:
            ints = [int(m) for m in members if _INT_STRING.match(m) and m != "-0"]
            listed = np.isin(x, np.array([i for i in ints if -(2**63) <= i < 2**63], dtype=np.int64))
        else:
            numbers = []
            for m in members:
                try:
                    number = float(m)
                except ValueError:
                    continue
                if number == number and js_number_string(number) == m:
                    numbers.append(number)
            listed = np.isin(x, np.array(numbers, dtype=np.float64))
        return listed if operator == "ONE_OF" else ~listed
    return None


def _per_distinct_number(column: Column, predicate: Predicate) -> np.ndarray:
    x = column.values
    present = ~column.missing
    out = np.zeros(len(x), dtype=bool)
    if not present.any():
        return out
    distinct, inverse = np.unique(x[present], return_inverse=True)
    cast = int if column.kind == INT else float
    per = np.fromiter((bool(predicate(cast(v))) for v in distinct.tolist()), dtype=bool, count=len(distinct))
    out[present] = per[inverse.reshape(-1)]
    return out
