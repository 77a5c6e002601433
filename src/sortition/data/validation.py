"""Checks at the data boundary: every error names the column, the first bad rows, and the fix."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

OUTCOME_KINDS = ("continuous", "binary", "revenue")
_SHOW = 5  # how many bad rows an error message lists


def first_rows(mask: np.ndarray, index: Sequence | None = None) -> str:
    """The first few row positions where ``mask`` is true, as text for an error message."""
    rows = np.flatnonzero(mask)
    shown = rows[:_SHOW] if index is None else [index[i] for i in rows[:_SHOW]]
    more = f" (and {len(rows) - _SHOW} more)" if len(rows) > _SHOW else ""
    return f"{list(map(_plain, shown))}{more}"


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def require_columns(df: pd.DataFrame, roles: dict[str, str | None]) -> None:
    for role, col in roles.items():
        if col is not None and col not in df.columns:
            raise ValueError(
                f"{role} column {col!r} is not in the data; columns are {list(df.columns)[:20]}. "
                f"Pass {role}=<column name>."
            )


def resolve_arms(values: pd.Series, col: str, arms: Sequence | None, control) -> tuple:
    """Arm names in order, control first; every row's arm must be listed and every arm must have rows."""
    if values.isna().any():
        raise ValueError(f"arm column {col!r} has missing values at rows {first_rows(values.isna().to_numpy())}; "
                         "drop those rows or fill in the arm each visitor received.")
    present = list(pd.unique(values))
    if arms is None:
        try:
            ordered = sorted(present)
        except TypeError:
            ordered = sorted(present, key=str)
        if control is not None:
            if control not in ordered:
                raise ValueError(f"control={control!r} is not an arm in column {col!r}; arms seen: {ordered}.")
            ordered.remove(control)
            ordered.insert(0, control)
        arms = ordered
    else:
        arms = list(arms)
        if len(set(arms)) != len(arms):
            raise ValueError(f"arms={arms} lists an arm twice; list each arm once, control first.")
        if control is not None and arms[0] != control:
            raise ValueError(f"arms={arms} starts with {arms[0]!r} but control={control!r}; put the control first.")
        unknown = ~values.isin(arms).to_numpy()
        if unknown.any():
            bad = sorted(set(values[unknown].tolist()), key=str)[:_SHOW]
            raise ValueError(f"arm column {col!r} holds arms not in arms={arms}: {bad} at rows {first_rows(unknown)}; "
                             "add them to arms= or drop those rows.")
    if len(arms) < 2:
        raise ValueError(f"arm column {col!r} has {len(arms)} arm(s) {arms}; an experiment needs at least two "
                         "(control first).")
    empty = [a for a in arms if a not in set(present)]
    if empty:
        raise ValueError(f"arm(s) {empty} have no rows in column {col!r}; remove them from arms= or add data.")
    return tuple(_plain(a) for a in arms)


def numeric_column(values: pd.Series, col: str, role: str) -> np.ndarray:
    if values.dtype == bool:
        values = values.astype(float)
    out = pd.to_numeric(values, errors="coerce")
    bad = out.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        raise TypeError(f"{role} column {col!r} has non-numeric values at rows {first_rows(bad)} "
                        f"(e.g. {values[bad].iloc[0]!r}); convert it to numbers.")
    return out.to_numpy(dtype=np.float64, na_value=np.nan)


def check_outcome(y: np.ndarray, col: str, kind: str) -> None:
    """Outcome values the model for ``kind`` can take: finite; 0/1 for binary; >= 0 for revenue."""
    if kind not in OUTCOME_KINDS:
        raise ValueError(f"outcome={kind!r} is not a known kind; use one of {OUTCOME_KINDS}.")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"outcome column {col!r} has missing or infinite values at rows {first_rows(bad)}; "
                         "drop those rows or fill them (0 for no conversion / no revenue).")
    if kind == "binary":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(f"outcome column {col!r} must be 0/1 for outcome='binary' but has "
                             f"{y[bad][0]!r} at rows {first_rows(bad)}; use outcome='continuous' or 'revenue'.")
    if kind == "revenue":
        bad = y < 0
        if bad.any():
            raise ValueError(f"outcome column {col!r} must be >= 0 for outcome='revenue' but is negative at rows "
                             f"{first_rows(bad)}; use outcome='continuous' for signed outcomes.")


def check_propensity(p: np.ndarray, col: str) -> None:
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        raise ValueError(f"propensity column {col!r} must be in (0, 1] (the probability of the arm each row "
                         f"received) but is {p[bad][0]!r} at rows {first_rows(bad)}.")


def check_unique(values: pd.Series, col: str) -> None:
    dup = values.duplicated(keep=False).to_numpy()
    if dup.any():
        raise ValueError(f"subject column {col!r} has duplicate keys at rows {first_rows(dup)} "
                         f"(e.g. {values[dup].iloc[0]!r}); keep one row per subject (aggregate outcomes first).")
    if values.isna().any():
        raise ValueError(f"subject column {col!r} has missing keys at rows {first_rows(values.isna().to_numpy())}.")


_PROBLEM_VERBS = {"entirely missing": "is", "constant": "is",
                  "a distinct value on every row (an identifier?)": "has"}


def covariate_problem(s: pd.Series) -> str | None:
    """Why a covariate column is unusable ("entirely missing", "constant", "a distinct value on every
    row (an identifier?)"), or None. The one rule behind the fit's warnings and the report's data quality."""
    if s.isna().all():
        return "entirely missing"
    if s.nunique(dropna=False) <= 1:
        return "constant"
    text_like = not pd.api.types.is_numeric_dtype(s.dtype) and s.dtype != bool
    if len(s) > 20 and text_like and s.nunique() == len(s):
        return "a distinct value on every row (an identifier?)"
    return None


def clean_covariates(df: pd.DataFrame) -> pd.DataFrame:
    """Raw covariates with a RangeIndex; constant or all-missing columns are dropped with a warning."""
    keep = []
    for col in df.columns:
        s = df[col]
        kind = s.dtype.kind
        if not (kind in "biufcO" or isinstance(s.dtype, (pd.CategoricalDtype, pd.StringDtype, pd.BooleanDtype))
                or pd.api.types.is_numeric_dtype(s.dtype)):
            raise TypeError(f"covariate column {col!r} has dtype {s.dtype}; covariates must be numeric, boolean or "
                            "categorical (convert dates to numbers such as days since an event).")
        problem = covariate_problem(s)
        if problem is not None:
            advice = " Pass subject=<column> for subject keys." if problem.startswith("a distinct") else ""
            warnings.warn(f"covariate column {col!r} {_PROBLEM_VERBS[problem]} {problem}; dropped.{advice}",
                          UserWarning, stacklevel=4)
            continue
        keep.append(col)
    out = df[keep].reset_index(drop=True)
    return out
