"""The one covariate encoding used by every fit engine: raw covariates -> a float64 design matrix.

Numeric and boolean columns pass through (missing values imputed with the median and flagged in an
extra ``<col>__missing`` column); categorical columns become one-hot columns ``<col>=<level>`` (missing is
its own level, rare levels beyond ``max_levels`` are pooled into ``<col>=__other__``). Trees split on
these, while segments and rules keep using the raw columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype))


@dataclass(frozen=True)
class Encoding:
    """A fitted encoding: column names of the design matrix and how to rebuild it from raw covariates."""

    names: tuple[str, ...]
    numeric: tuple[tuple[str, float, bool], ...]  # (column, fill value, add missing flag)
    categorical: tuple[tuple[str, tuple], ...]  # (column, levels kept)

    @classmethod
    def fit(cls, covariates: pd.DataFrame, max_levels: int = 30) -> Encoding:
        numeric, categorical, names = [], [], []
        for col in covariates.columns:
            s = covariates[col]
            if is_categorical(s):
                counts = s.astype("object").where(s.notna(), None).value_counts(dropna=False)
                levels = tuple(sorted((v for v in counts.index[:max_levels]), key=lambda v: (v is None, str(v))))
                categorical.append((col, levels))
                names += [f"{col}={'__missing__' if v is None else v}" for v in levels]
                if len(counts) > max_levels:
                    names.append(f"{col}=__other__")
            else:
                x = pd.to_numeric(s.astype("float64") if s.dtype == bool else s, errors="coerce")
                has_na = bool(x.isna().any())
                fill = float(np.nanmedian(x.to_numpy(dtype=float, na_value=np.nan))) if x.notna().any() else 0.0
                numeric.append((col, fill, has_na))
                names.append(str(col))
                if has_na:
                    names.append(f"{col}__missing")
        return cls(tuple(names), tuple(numeric), tuple(categorical))

    def transform(self, covariates: pd.DataFrame) -> np.ndarray:
        """Design matrix (n, len(names)) float64, columns in ``names`` order."""
        n = len(covariates)
        cols: dict[str, np.ndarray] = {}
        for col, fill, flag in self.numeric:
            s = covariates[col]
            x = pd.to_numeric(s.astype("float64") if s.dtype == bool else s, errors="coerce")
            x = x.to_numpy(dtype=np.float64, na_value=np.nan)
            miss = np.isnan(x)
            cols[str(col)] = np.where(miss, fill, x)
            if flag:
                cols[f"{col}__missing"] = miss.astype(np.float64)
        for col, levels in self.categorical:
            s = covariates[col].astype("object")
            isna = s.isna().to_numpy()
            vals = s.to_numpy()
            matched = np.zeros(n, dtype=bool)
            for v in levels:
                hit = isna if v is None else (~isna & (vals == v))
                matched |= hit
                cols[f"{col}={'__missing__' if v is None else v}"] = hit.astype(np.float64)
            other = f"{col}=__other__"
            if other in self.names:
                cols[other] = (~matched).astype(np.float64)
        if not self.names:
            return np.zeros((n, 0))
        return np.column_stack([cols[name] for name in self.names])

    def categorical_columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.categorical)
