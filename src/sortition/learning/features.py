"""Feature encoding of bandit attribute groups, mirroring how the evaluator scores them.

The evaluator scores an action as
    intercept
    + sum over numeric attributes:   value * coefficient   if the value is a finite number,
                                     missingValueCoefficient otherwise
    + sum over categorical attributes: valueCoefficients[str(value)] if that value has one,
                                     missingValueCoefficient otherwise (absent, empty, unseen).
So the design matrix has, per numeric attribute, its (standardized) value with 0 when missing and
a missing indicator; per categorical attribute, one indicator per known value and one for
"missing or unknown". A linear fit in these columns is exactly a model in the bandit format.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sortition.serving.attributes import categorical_value as serving_categorical
from sortition.serving.attributes import numeric_value as serving_numeric

GROUPS = ("subject", "action")


def numeric_value(value: Any) -> float | None:
    """The number the evaluator would use, or None where it uses the missing coefficient."""
    x = serving_numeric(value)
    return None if x is None else float(x)


def categorical_value(value: Any) -> str | None:
    """The string the evaluator would look up, or None for absent/null/NaN/empty: those score the
    missing coefficient (the training never learns a coefficient for the empty string)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return serving_categorical(value) or None


@dataclass(frozen=True)
class NumericColumn:
    group: str  # "subject" or "action"
    key: str
    mean: float  # of present values; the fit sees (x - mean) / scale
    scale: float


@dataclass(frozen=True)
class CategoricalColumn:
    group: str
    key: str
    values: tuple[str, ...]  # one indicator each, in this order, then one for missing/unknown


@dataclass(frozen=True)
class FeatureLayout:
    """Columns of the design matrix: [intercept, per numeric (value, missing), per categorical
    (one per value, missing)]. Learned from data by :func:`fit_layout`."""

    numeric: tuple[NumericColumn, ...]
    categorical: tuple[CategoricalColumn, ...]

    @property
    def n_columns(self) -> int:
        return 1 + 2 * len(self.numeric) + sum(len(c.values) + 1 for c in self.categorical)

    def penalized(self) -> np.ndarray:
        """(p,) bool: every column but the intercept is shrunk by the ridge penalty."""
        mask = np.ones(self.n_columns, dtype=bool)
        mask[0] = False
        return mask

    def encode(
        self,
        numeric: dict[str, Sequence[dict[str, Any]]],
        categorical: dict[str, Sequence[dict[str, Any]]],
    ) -> np.ndarray:
        """Design matrix (n, p) float64.

        Args:
            numeric: {"subject": n dicts, "action": n dicts} of numeric attribute groups.
            categorical: the same for categorical attribute groups.
        """
        n = len(numeric["subject"])
        X = np.zeros((n, self.n_columns))
        X[:, 0] = 1.0
        j = 1
        for col in self.numeric:
            rows = numeric[col.group]
            for i in range(n):
                x = numeric_value(rows[i].get(col.key))
                if x is None:
                    X[i, j + 1] = 1.0
                else:
                    X[i, j] = (x - col.mean) / col.scale
            j += 2
        for col in self.categorical:
            index = {v: k for k, v in enumerate(col.values)}
            miss = j + len(col.values)
            rows = categorical[col.group]
            for i in range(n):
                v = categorical_value(rows[i].get(col.key))
                k = index.get(v) if v is not None else None
                X[i, miss if k is None else j + k] = 1.0
            j = miss + 1
        return X

    def coefficients(self, beta: np.ndarray) -> dict[str, Any]:
        """Map a fitted (p,) vector back to raw-unit bandit coefficients.

        Returns dict with intercept and, per group, lists of (key, coefficient, missing) numeric
        and (key, {value: coefficient}, missing) categorical entries.
        """
        intercept = float(beta[0])
        out: dict[str, Any] = {f"{g}_{kind}": [] for g in GROUPS for kind in ("numeric", "categorical")}
        j = 1
        for col in self.numeric:
            b, g = float(beta[j]), float(beta[j + 1])
            raw = b / col.scale
            # present: b (x - mean) / scale = raw x - raw mean; move -raw mean out of "present"
            # into the intercept and give it back to "missing".
            intercept -= raw * col.mean
            out[f"{col.group}_numeric"].append((col.key, raw, g + raw * col.mean))
            j += 2
        for col in self.categorical:
            values = {v: float(beta[j + k]) for k, v in enumerate(col.values)}
            miss = float(beta[j + len(col.values)])
            out[f"{col.group}_categorical"].append((col.key, values, miss))
            j += len(col.values) + 1
        out["intercept"] = intercept
        return out


def numeric_column(group: str, key: str, mean: float, sd: float) -> NumericColumn:
    """A numeric column standardized by the mean and (population) sd of its present values; a
    constant (or never present) attribute keeps scale 1."""
    return NumericColumn(group, key, mean, sd if sd > 1e-12 * max(1.0, abs(mean)) else 1.0)


def fit_layout(
    numeric: dict[str, Sequence[dict[str, Any]]],
    categorical: dict[str, Sequence[dict[str, Any]]],
    min_count: int = 1,
) -> FeatureLayout:
    """Learn the columns from the attribute groups of one action's events.

    Numeric attributes are standardized with the mean and standard deviation of their present
    values (so one ridge penalty treats all attributes alike); a categorical value gets its own
    coefficient when seen at least ``min_count`` times, rarer values share the missing coefficient.
    """
    num_cols: list[NumericColumn] = []
    cat_cols: list[CategoricalColumn] = []
    for group in GROUPS:
        keys = sorted({k for row in numeric[group] for k in row})
        for key in keys:
            xs = np.array([x for row in numeric[group] if (x := numeric_value(row.get(key))) is not None])
            mean, sd = (float(xs.mean()), float(xs.std())) if xs.size else (0.0, 0.0)
            num_cols.append(numeric_column(group, key, mean, sd))
        keys = sorted({k for row in categorical[group] for k in row})
        for key in keys:
            counts = Counter(
                v for row in categorical[group] if (v := categorical_value(row.get(key))) is not None
            )
            values = tuple(sorted(v for v, c in counts.items() if c >= min_count))
            cat_cols.append(CategoricalColumn(group, key, values))
    return FeatureLayout(tuple(num_cols), tuple(cat_cols))
