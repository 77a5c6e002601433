"""Checks at the data boundary: every error names the column, the first bad rows, and the fix.

Rows are named the way the user can find them: positions (0-based) in a DataFrame, file lines
(1-based, the header is line 1) in a CSV, 1-based row numbers in Parquet and DuckDB results. The
loaders in :mod:`sortition.data.files` attach a :class:`RowLabels` to the frames they read.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sortition.names import did_you_mean, listing

OUTCOME_KINDS = ("continuous", "binary", "revenue")
_SHOW = 5  # how many bad rows an error message lists
ROW_LABELS = "sortition.rows"  # the DataFrame.attrs key a loader puts its RowLabels under
# an unlisted arm with fewer rows than this share of the largest arm is a mistake; so is one under
# NEAR_ARM_SHARE whose name is close to another arm's ('Control' beside 'control')
TINY_ARM_SHARE = 0.02
NEAR_ARM_SHARE = 0.1


@dataclass(frozen=True)
class RowLabels:
    """How messages name row positions: ``word`` and the label of row 0 (``first``)."""

    word: str = "rows"
    first: int = 0
    source: str | None = None  # the file, when the rows came from one

    def at(self, mask: np.ndarray) -> str:
        """``"rows [3, 7]"`` / ``"lines [5, 9] of data.csv"``: the first few rows where ``mask`` holds."""
        rows = np.flatnonzero(mask)
        shown = [int(r) + self.first for r in rows[:_SHOW]]
        more = f" (and {len(rows) - _SHOW} more)" if len(rows) > _SHOW else ""
        where = f" of {self.source}" if self.source else ""
        return f"{self.word} {shown}{more}{where}"


POSITIONS = RowLabels()
KIND_ON_THE_COMMAND_LINE = " (--kind on the command line)"  # where the library's outcome= is an option
_CLI_ROLES = ("arm", "outcome", "subject", "propensity", "covariates")


def labels_of(df: pd.DataFrame) -> RowLabels:
    """The RowLabels a loader attached to ``df`` (positions for a frame built in memory)."""
    found = df.attrs.get(ROW_LABELS)
    return found if isinstance(found, RowLabels) else POSITIONS


def first_rows(mask: np.ndarray, index: Sequence | None = None) -> str:
    """The first few row positions where ``mask`` is true, as text for an error message."""
    rows = np.flatnonzero(mask)
    shown = rows[:_SHOW] if index is None else [index[i] for i in rows[:_SHOW]]
    more = f" (and {len(rows) - _SHOW} more)" if len(rows) > _SHOW else ""
    return f"{list(map(_plain, shown))}{more}"


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def require_columns(df: pd.DataFrame, roles: dict[str, str | None]) -> None:
    """Refuse a role's column the data lacks, naming the nearest. A role is ``arm``, ``outcome``, ...
    or one item of a list (``covariates[1]``), whose fix is in the list."""
    for role, col in roles.items():
        if col is not None and col not in df.columns:
            option = role.split("[", 1)[0]
            fix = f"Pass {role}=<column name>" if option == role else f"Fix {role} in {option}=[...]"
            raise ValueError(
                f"{role} column {col!r} is not in the data{did_you_mean(col, df.columns)}; columns are "
                f"{listing(df.columns, 20)}. {fix}"
                + (f" (--{option} on the command line)." if option in _CLI_ROLES else ".")
            )


def resolve_arms(values: pd.Series, col: str, arms: Sequence | None, control, *,
                 rows: RowLabels = POSITIONS, require_control: bool = False) -> tuple:
    """Arm names in order, control first; every row's arm must be listed and every arm must have rows.

    Without ``arms``, an arm with under ``TINY_ARM_SHARE`` of the largest arm's rows, or under
    ``NEAR_ARM_SHARE`` with a name close to a bigger arm's, is refused (mislabelled rows such as
    ``Control`` beside ``control`` would otherwise become a real arm that can win traffic), and the
    order is sorted with ``control`` moved first. ``require_control``: without ``control``, an arm
    named ``control`` is the control, and any other data is refused (the caller must name it).
    """
    if values.isna().any():
        raise ValueError(f"arm column {col!r} has missing values at {rows.at(values.isna().to_numpy())}; "
                         "drop those rows or fill in the arm each visitor received.")
    present = list(pd.unique(values))
    if arms is None:
        try:
            ordered = sorted(present)
        except TypeError:
            ordered = sorted(present, key=str)
        _refuse_tiny_arms(values, col, ordered, rows)
        if control is None and require_control:
            named = [a for a in ordered if str(a).casefold() == "control"]
            if len(named) != 1:
                raise ValueError(
                    f"which arm of column {col!r} is the control? None is named 'control'; arms seen: "
                    f"{listing(ordered)}. Name it with --control (or list the arms, control first, with --arms)."
                )
            control = named[0]
        if control is not None:
            if control not in ordered:
                raise ValueError(f"control={control!r} is not an arm in column {col!r}"
                                 f"{did_you_mean(control, ordered)}; arms seen: {listing(ordered)}.")
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
            hint = did_you_mean(bad[0], arms)
            raise ValueError(f"arm column {col!r} holds arms not in the arms {listing(arms)}: {listing(bad)}{hint} "
                             f"at {rows.at(unknown)}; add them to the arms or drop those rows.")
    if len(arms) < 2:
        raise ValueError(f"arm column {col!r} has {len(arms)} arm(s) {listing(arms)}; an experiment needs at "
                         "least two (control first).")
    empty = [a for a in arms if a not in set(present)]
    if empty:
        raise ValueError(f"arm(s) {[_plain(a) for a in empty]} have no rows in column {col!r}; remove them from the arms or "
                         "add data.")
    return tuple(_plain(a) for a in arms)


def _refuse_tiny_arms(values: pd.Series, col: str, arms: list, rows: RowLabels) -> None:
    counts = values.value_counts()
    largest = int(counts.max())

    def suspect(a) -> bool:
        if counts[a] < TINY_ARM_SHARE * largest:
            return True
        others = [str(b) for b in arms if b != a and counts[b] > counts[a]]
        return counts[a] < NEAR_ARM_SHARE * largest and bool(did_you_mean(a, others))

    tiny = [a for a in arms if suspect(a)]
    if not tiny:
        return
    a = tiny[0]
    others = [str(b) for b in arms if b not in tiny]
    raise ValueError(
        f"arm {a!r} of column {col!r} has only {int(counts[a]):,} row{'s' if counts[a] > 1 else ''} beside "
        f"{largest:,} for the largest arm "
        f"{did_you_mean(a, others).strip() or '(a mislabelled arm?)'}; it is at "
        f"{rows.at((values == a).to_numpy())}. Fix or drop those rows, or list the arms (control first) "
        "with --arms to keep it."
    )


def numeric_column(values: pd.Series, col: str, role: str, *, rows: RowLabels = POSITIONS) -> np.ndarray:
    if values.dtype == bool:
        values = values.astype(float)
    out = pd.to_numeric(values, errors="coerce")
    bad = out.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        raise TypeError(f"{role} column {col!r} has non-numeric values at {rows.at(bad)} "
                        f"(e.g. {_plain(values[bad].iloc[0])!r}); convert it to numbers.")
    return out.to_numpy(dtype=np.float64, na_value=np.nan)


def _number(x: float) -> str:
    x = float(x)
    return f"{x:g}" if x != int(x) or abs(x) >= 1e15 else str(int(x))


def check_outcome(y: np.ndarray, col: str, kind: str, *, rows: RowLabels = POSITIONS) -> None:
    """Outcome values the model for ``kind`` can take: finite; 0/1 for binary; >= 0 for revenue."""
    if kind not in OUTCOME_KINDS:
        raise ValueError(f"outcome={kind!r} is not a known kind{did_you_mean(kind, OUTCOME_KINDS)}; use one of "
                         f"{listing(OUTCOME_KINDS)}.")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"outcome column {col!r} has missing or infinite values at {rows.at(bad)}; "
                         "drop those rows or fill them (0 for no conversion / no revenue).")
    if kind == "binary":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(f"outcome column {col!r} must be 0/1 for outcome='binary' but has "
                             f"{_number(y[bad][0])} at {rows.at(bad)}; use outcome='continuous' or 'revenue'"
                             f"{KIND_ON_THE_COMMAND_LINE}.")
    if kind == "revenue":
        bad = y < 0
        if bad.any():
            raise ValueError(f"outcome column {col!r} must be >= 0 for outcome='revenue' but is negative "
                             f"({_number(y[bad][0])}) at {rows.at(bad)}; use outcome='continuous' for signed "
                             f"outcomes{KIND_ON_THE_COMMAND_LINE}.")
    if kind in ("binary", "revenue") and len(y):
        converted = y > 0
        if not converted.any():  # almost surely a metric with no events, or one joined wrongly
            raise ValueError(f"outcome column {col!r} is 0 in all {len(y):,} rows: no visitor converted, "
                             "so there is no conversion rate to compare (check the metric's events and its "
                             "join, or wait for conversions).")
        # revenue may be earned from everyone (the BCF engine refuses that, the stratified one fits it)
        if kind == "binary" and converted.all():
            raise ValueError(f"outcome column {col!r} is 1 in all {len(y):,} rows: every visitor converted, "
                             "so there is no conversion rate to compare (were only the converters' rows "
                             "joined?).")


# a non-negative outcome is revenue-like (orders: most visitors spend nothing) when this share is 0
REVENUE_ZERO_SHARE = 0.2


def infer_kind(y: np.ndarray, col: str) -> tuple[str, str]:
    """The outcome kind the values imply, and why: 0/1 -> binary; non-negative with at least
    ``REVENUE_ZERO_SHARE`` zeros -> revenue. Anything else raises: the caller must name the kind
    (a continuous outcome is never assumed)."""
    y = np.asarray(y, dtype=float)
    finite = y[np.isfinite(y)]
    if finite.size and np.isin(finite, (0.0, 1.0)).all():
        return "binary", f"{col!r} is 0/1"
    zeros = float((finite == 0).mean()) if finite.size else 0.0
    if finite.size and (finite >= 0).all() and zeros >= REVENUE_ZERO_SHARE:
        return "revenue", f"{col!r} is non-negative and {zeros:.0%} zeros"
    what = ("has negative values" if finite.size and (finite < 0).any() else
            f"is non-negative with {zeros:.0%} zeros")
    raise ValueError(
        f"what kind of outcome is {col!r}? It {what}, so it is neither 0/1 (binary) nor revenue-like "
        "(non-negative, many zeros); name it with --kind continuous (or binary, revenue)."
    )


def check_propensity(p: np.ndarray, col: str, *, rows: RowLabels = POSITIONS) -> None:
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        raise ValueError(f"propensity column {col!r} must be in (0, 1] (the probability of the arm each row "
                         f"received) but is {_number(p[bad][0]) if np.isfinite(p[bad][0]) else 'missing'} at "
                         f"{rows.at(bad)}.")


def check_unique(values: pd.Series, col: str, *, rows: RowLabels = POSITIONS) -> None:
    dup = values.duplicated(keep=False).to_numpy()
    if dup.any():
        raise ValueError(f"subject column {col!r} has duplicate keys at {rows.at(dup)} "
                         f"(e.g. {_plain(values[dup].iloc[0])!r}); keep one row per subject (aggregate outcomes "
                         "first).")
    if values.isna().any():
        raise ValueError(f"subject column {col!r} has missing keys at {rows.at(values.isna().to_numpy())}.")


def is_timestamp(s: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype)


IDENTIFIER = "a distinct value on every row (an identifier?)"
NESTED = "nested values (lists or records)"
_NESTED_TYPES = (list, tuple, dict, set, np.ndarray)


def _first_nested(s: pd.Series) -> object | None:
    """The first list/record value of an object column (Parquet list and struct columns), or None."""
    for value in s:
        if isinstance(value, _NESTED_TYPES):
            return value.tolist() if isinstance(value, np.ndarray) else value
    return None


def covariate_problem(s: pd.Series) -> str | None:
    """Why a covariate column is unusable ("entirely missing", "constant", :data:`IDENTIFIER`; "timestamps";
    :data:`NESTED`), or None. The one rule behind the fit's warnings and the report's data quality."""
    if is_timestamp(s):
        return "timestamps"
    if s.isna().all():
        return "entirely missing"
    try:
        distinct = s.nunique(dropna=False)
    except TypeError:  # unhashable values: Parquet list or struct columns (found here at no cost otherwise)
        return f"{NESTED}, such as {_first_nested(s)!r}"
    if distinct <= 1:
        return "constant"
    if len(s) > 20 and not pd.api.types.is_numeric_dtype(s.dtype) and s.dtype != bool and s.nunique() == len(s):
        return IDENTIFIER
    return None


def _stray_text(s: pd.Series) -> str | None:
    """For a text column whose values are at least 90% numbers, the others (``"2 values ('unknown',
    '?')"``); else None. A numeric column with a placeholder in it is read as text."""
    if pd.api.types.is_numeric_dtype(s.dtype) or s.dtype == bool:
        return None
    values = s.dropna()
    if values.empty or not all(isinstance(v, str) for v in values.head(1000)):
        return None
    numeric = pd.to_numeric(values, errors="coerce").notna()
    if numeric.all() or numeric.mean() < 0.9:
        return None
    others = values[~numeric]
    examples = ", ".join(repr(v) for v in others.drop_duplicates().head(3))
    return f"{len(others):,} value{'s' if len(others) > 1 else ''} ({examples})"


def clean_covariates(df: pd.DataFrame, *, subject_given: bool = False) -> pd.DataFrame:
    """Raw covariates with a RangeIndex; constant, all-missing, identifier-like and timestamp columns
    are dropped with a warning that names them, and numbers with stray text are named in one."""
    keep = []
    for col in df.columns:
        s = df[col]
        kind = s.dtype.kind
        if is_timestamp(s):
            warnings.warn(f"column {col!r} holds timestamps, not a covariate; dropped (to use it, convert it to a "
                          "number such as days since sign-up).", UserWarning, stacklevel=4)
            continue
        if not (kind in "biufcO" or isinstance(s.dtype, (pd.CategoricalDtype, pd.StringDtype, pd.BooleanDtype))
                or pd.api.types.is_numeric_dtype(s.dtype)):
            raise TypeError(f"covariate column {col!r} has dtype {s.dtype}; covariates must be numeric, boolean or "
                            "categorical.")
        problem = covariate_problem(s)
        if problem is not None:
            advice = ""
            if problem == IDENTIFIER and not subject_given:
                advice = " Pass subject=<column> (--subject) if it holds the subject keys."
            if problem.startswith(NESTED):
                advice = " Flatten it into columns of numbers or text to use it."
            verb = "has" if problem == IDENTIFIER else "holds" if problem.startswith(NESTED) else "is"
            warnings.warn(f"covariate column {col!r} {verb} {problem}; dropped.{advice}", UserWarning, stacklevel=4)
            continue
        stray = _stray_text(s)
        if stray:
            warnings.warn(f"covariate column {col!r} holds numbers except for {stray}; it is used as "
                          "categories, so no split on it can be a threshold. Blank those values out to use "
                          "it as a number.", UserWarning, stacklevel=4)
        keep.append(col)
    out = df[keep].reset_index(drop=True)
    return out
