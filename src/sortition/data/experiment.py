"""ExperimentData: the validated, row-pinned experiment table every offline package reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from sortition.data import validation as v
from sortition.data.encoding import Encoding


@dataclass(frozen=True, eq=False)
class ExperimentData:
    """Logged experiment data: one row per subject, arms in order with the control first.

    Row order is pinned to the input order (row i of every array and of every posterior draw is row i
    of the input). Arrays are read-only. Build it with :meth:`from_frame` (or the file/DuckDB loaders).

    Attributes:
        arms: arm names, control first.
        subject: (n,) subject keys (row numbers when no subject column was named).
        arm_index: (n,) int64, index into ``arms`` (0 = control).
        outcome: (n,) float64 outcome, in the metric's units.
        covariates: raw covariate values, RangeIndex 0..n-1 (segments are rules on these).
        propensity: (n,) float64 probability of the received arm, or None.
        cell, round: (n,) arrays or None.
        columns: the source column name of each role (arm, outcome, subject, propensity, cell, round).
    """

    arms: tuple
    subject: np.ndarray
    arm_index: np.ndarray
    outcome: np.ndarray
    covariates: pd.DataFrame
    propensity: np.ndarray | None = None
    cell: np.ndarray | None = None
    round: np.ndarray | None = None
    columns: dict = field(default_factory=dict)

    # --- shape -------------------------------------------------------------------------------
    @property
    def control(self):
        return self.arms[0]

    @property
    def n(self) -> int:
        return int(self.arm_index.shape[0])

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(self.covariates.columns)

    def arm_counts(self) -> np.ndarray:
        """(K,) rows per arm, arm order."""
        return np.bincount(self.arm_index, minlength=self.n_arms)

    def __repr__(self) -> str:
        return (f"ExperimentData(n={self.n}, arms={self.arms}, outcome={self.columns.get('outcome')!r}, "
                f"covariates={list(self.covariate_names)})")

    # --- encodings -----------------------------------------------------------------------------
    @cached_property
    def encoding(self) -> Encoding:
        """The one covariate encoding (one-hot categoricals, imputed numerics) used by the fit engines."""
        return Encoding.fit(self.covariates)

    def design_matrix(self) -> np.ndarray:
        """(n, p) float64 encoded covariates, columns ``encoding.names``."""
        return self.encoding.transform(self.covariates)

    def check_outcome(self, kind: str) -> None:
        """Raise if the outcome cannot be modelled as ``kind`` (binary must be 0/1, revenue >= 0)."""
        v.check_outcome(self.outcome, self.columns.get("outcome", "outcome"), kind)

    def frame(self) -> pd.DataFrame:
        """The data as one DataFrame with the source column names (roles first, then covariates)."""
        c = self.columns
        out = {c.get("subject") or "subject": self.subject,
               c.get("arm", "arm"): np.asarray(self.arms, dtype=object)[self.arm_index],
               c.get("outcome", "y"): self.outcome}
        for role in ("propensity", "cell", "round"):
            arr = getattr(self, role)
            if arr is not None:
                out[c.get(role) or role] = arr
        df = pd.DataFrame(out)
        return pd.concat([df, self.covariates], axis=1)

    def subset(self, rows: np.ndarray) -> ExperimentData:
        """A new ExperimentData on the given rows (positions or boolean mask), same arms and columns."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        take = lambda a: None if a is None else _readonly(a[rows])  # noqa: E731
        return ExperimentData(self.arms, take(self.subject), take(self.arm_index), take(self.outcome),
                              self.covariates.iloc[rows].reset_index(drop=True), take(self.propensity),
                              take(self.cell), take(self.round), dict(self.columns))

    # --- constructors ---------------------------------------------------------------------------
    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, arm: str = "arm", outcome: str = "y", subject: str | None = None,
                   arms: Sequence | None = None, control=None, covariates: Sequence[str] | None = None,
                   propensity: str | None = None, cell: str | None = None, round: str | None = None,
                   require_control: bool = False) -> ExperimentData:
        """Validate a DataFrame and pin its rows.

        Args:
            df: one row per subject.
            arm, outcome: column names of the received arm and the outcome (finite numbers).
            subject: column of unique subject keys (default: row numbers).
            arms: arm names in order, control first (default: sorted; ``control=`` moves one to the front).
            covariates: covariate columns (default: every column not named in another role). Numeric,
                boolean or categorical; missing values allowed; constant or all-missing ones are dropped
                with a warning.
            propensity: column with the probability, in (0, 1], of the arm each row received.
            cell, round: optional columns carried along (adaptive experiments).
            require_control: without ``arms``/``control``, take the arm named ``control`` as the
                control and refuse data that has none (instead of the first in sorted order).

        Errors name rows by position, or by file line when the frame came from
        :func:`sortition.data.files.read_table` (it attaches a ``RowLabels``).
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"from_frame expects a pandas DataFrame, got {type(df).__name__}.")
        roles = {"arm": arm, "outcome": outcome, "subject": subject, "propensity": propensity,
                 "cell": cell, "round": round}
        v.require_columns(df, roles)
        if len(df) == 0:
            raise ValueError("the data has no rows.")
        rows = v.labels_of(df)
        df = df.reset_index(drop=True)
        arm_names = v.resolve_arms(df[arm], arm, arms, control, rows=rows, require_control=require_control)
        arm_index = _arm_codes(df[arm], arm_names)
        y = v.numeric_column(df[outcome], outcome, "outcome", rows=rows)
        bad = ~np.isfinite(y)
        if bad.any():
            raise ValueError(f"outcome column {outcome!r} has missing or infinite values at {rows.at(bad)}; "
                             "drop those rows or fill them (0 for no conversion).")
        if subject is not None:
            v.check_unique(df[subject], subject, rows=rows)
            subj = df[subject].to_numpy()
        else:
            subj = np.arange(len(df))
        prop = None
        if propensity is not None:
            prop = v.numeric_column(df[propensity], propensity, "propensity", rows=rows)
            v.check_propensity(prop, propensity, rows=rows)
        used = {c for c in roles.values() if c is not None}
        if covariates is None:
            covariates = [c for c in df.columns if c not in used]
        else:
            covariates = list(covariates)
            v.require_columns(df, {f"covariates[{i}]": c for i, c in enumerate(covariates)})
            clash = [c for c in covariates if c in used]
            if clash:
                raise ValueError(f"covariates {clash} are also named as arm/outcome/subject/propensity/cell/round; "
                                 "a column can play one role only.")
        cov = v.clean_covariates(df[covariates], subject_given=subject is not None)
        optional = lambda c: None if c is None else _readonly(_values(df[c]))  # noqa: E731
        cols = {k: c for k, c in roles.items() if c is not None}
        return cls(arm_names, _readonly(subj), _readonly(arm_index), _readonly(y), cov,
                   None if prop is None else _readonly(prop), optional(cell), optional(round), cols)

    @classmethod
    def from_parquet(cls, path: str | Path, **kw) -> ExperimentData:
        """Read a Parquet file (keywords as :meth:`from_frame`)."""
        from sortition.data.files import read_table

        return cls.from_frame(read_table(path), **kw)

    @classmethod
    def from_csv(cls, path: str | Path, **kw) -> ExperimentData:
        """Read a CSV file (keywords as :meth:`from_frame`)."""
        from sortition.data.files import read_table

        return cls.from_frame(read_table(path), **kw)

    @classmethod
    def from_duckdb(cls, con_or_path, query: str, **kw) -> ExperimentData:
        """Run ``query`` on a DuckDB connection or database path (keywords as :meth:`from_frame`)."""
        import duckdb

        if isinstance(con_or_path, (str, Path)):
            with duckdb.connect(str(con_or_path), read_only=True) as con:
                df = con.execute(query).df()
        else:
            df = con_or_path.execute(query).df()
        return cls.from_frame(df, **kw)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.flags.writeable:
        a = a.copy() if not a.flags.owndata else a
        a.flags.writeable = False
    return a


def _arm_codes(column: pd.Series, arm_names: Sequence) -> np.ndarray:
    """(n,) int64 index of each row's arm in ``arm_names``, through categorical codes (no per-row objects)."""
    codes = pd.Categorical(column, categories=list(arm_names)).codes
    if (codes < 0).any():  # a value outside the arms (resolve_arms lets none through): the exact lookup
        lookup = {a: i for i, a in enumerate(arm_names)}
        return column.map(lookup).to_numpy(dtype=np.int64)
    return codes.astype(np.int64)


def _values(column: pd.Series) -> np.ndarray:
    """The column as a numpy array; text with few distinct values as an object array sharing one Python
    object per value (10M rows of cells: 80 MB of pointers, not 10M separate strings)."""
    if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
        codes, levels = pd.factorize(column, use_na_sentinel=True)
        if len(levels) <= 1024 and not (codes < 0).any():
            return np.asarray(levels, dtype=object)[codes]
    return column.to_numpy()
