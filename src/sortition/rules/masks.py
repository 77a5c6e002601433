"""Vectorized masks of one condition over one column.

Numbers and booleans take numpy fast paths that restate the request-time semantics of
:func:`sortition.serving.conditions.compile_condition` (held to it by a property test);
strings and categoricals evaluate the request-time predicate once per distinct value; anything
else (mixed-type object columns) evaluates it per row.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from sortition.rules.condition import Condition, normalize_attribute
from sortition.serving.conditions import js_number_string, parse_semver, to_number

_INT_STRING = re.compile(r"^-?(0|[1-9]\d*)$")
_COMPARE = {"GT": np.greater, "GTE": np.greater_equal, "LT": np.less, "LTE": np.less_equal}


def condition_mask(column: pd.Series, condition: Condition) -> np.ndarray:
    """Boolean mask ``(n,)`` of the rows of ``column`` that satisfy ``condition``."""
    dtype = column.dtype
    op = condition.operator
    if op in ("MATCHES", "NOT_MATCHES"):
        return _generic_mask(column, condition)
    if ptypes.is_bool_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        return _bool_mask(column, condition)
    if isinstance(dtype, pd.StringDtype) or (
        dtype == object and op in ("ONE_OF", "NOT_ONE_OF", "IS_NULL") and _all_strings(column)
    ):
        return _string_mask(column, condition)
    if ptypes.is_float_dtype(dtype) or (
        ptypes.is_integer_dtype(dtype) and not ptypes.is_unsigned_integer_dtype(dtype)
    ):
        return _numeric_mask(column, condition)
    return _generic_mask(column, condition)


def _all_strings(column: pd.Series) -> bool:
    return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")


def _string_mask(column: pd.Series, condition: Condition) -> np.ndarray:
    """A string's JS spelling is itself, so ONE_OF is plain set membership."""
    op, value = condition.operator, condition.value
    missing = column.isna().to_numpy()
    if op == "IS_NULL":
        return _is_null_mask(missing, value)
    if op in ("ONE_OF", "NOT_ONE_OF"):
        listed = column.isin(list(value)).to_numpy(dtype=bool, na_value=False)
        return ~missing & (listed if op == "ONE_OF" else ~listed)
    return _generic_mask(column, condition)


def _is_null_mask(missing: np.ndarray, value: object) -> np.ndarray:
    expect = value if isinstance(value, bool) else str(value).lower() == "true"
    return missing == expect


def _numeric_mask(column: pd.Series, condition: Condition) -> np.ndarray:
    op, value = condition.operator, condition.value
    missing = column.isna().to_numpy()
    if op == "IS_NULL":
        return _is_null_mask(missing, value)
    is_int = ptypes.is_integer_dtype(column.dtype)
    if is_int:
        x = column.to_numpy(dtype=np.int64, na_value=0)
    else:
        x = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if op in ("ONE_OF", "NOT_ONE_OF"):
        # A number matches a listed string exactly when the string is the number's JS spelling.
        if is_int:
            members = [int(m) for m in value if _INT_STRING.match(m) and m != "-0"]
            listed = np.isin(x, np.array(members, dtype=np.int64))
        else:
            members = []
            for m in value:
                try:
                    number = float(m)
                except ValueError:
                    continue
                if number == number and js_number_string(number) == m:
                    members.append(number)
            listed = np.isin(x, np.array(members, dtype=np.float64))
        return ~missing & (listed if op == "ONE_OF" else ~listed)
    # Comparisons: a semver threshold never matches a number; a non-numeric one matches nothing;
    # non-finite attributes are not numbers at request time.
    threshold = None if parse_semver(value) is not None else to_number(value)
    if threshold is None:
        return np.zeros(len(x), dtype=bool)
    xf = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return ~missing & np.isfinite(xf) & _COMPARE[op](xf, threshold)


def _bool_mask(column: pd.Series, condition: Condition) -> np.ndarray:
    op, value = condition.operator, condition.value
    missing = column.isna().to_numpy()
    if op == "IS_NULL":
        return _is_null_mask(missing, value)
    if op in ("ONE_OF", "NOT_ONE_OF"):
        x = column.to_numpy(dtype=bool, na_value=False)
        listed = np.where(x, "true" in value, "false" in value)
        return ~missing & (listed if op == "ONE_OF" else ~listed)
    return np.zeros(len(column), dtype=bool)  # booleans are not numbers at request time


def _generic_mask(column: pd.Series, condition: Condition) -> np.ndarray:
    predicate = condition._predicate
    on_missing = bool(predicate(None))
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        levels = column.cat.categories
        per_level = np.array([bool(predicate(normalize_attribute(v))) for v in levels] + [on_missing])
        return per_level[np.where(codes < 0, len(levels), codes)]
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        per_level = np.array([bool(predicate(v)) for v in uniques] + [on_missing], dtype=bool)
        return per_level[np.where(codes < 0, len(uniques), codes)]
    # Mixed types: distinct values may compare equal across types (1 == 1.0 == True), so go row by row.
    return np.fromiter(
        (bool(predicate(normalize_attribute(v))) for v in column.to_numpy(dtype=object)),
        dtype=bool,
        count=len(column),
    )
