"""Covariates as ordered slots for the tree search, and the rule conditions of a split.

Each covariate becomes integer slot codes ``(n,)``: numeric columns by quantile bins (thresholds
are data values, so a rule reproduces the bin exactly), other columns by level. The last slot of
every feature holds the missing values, so they are routed explicitly: a value split of a node
whose column has missing values sends them to a third leaf ``x IS NULL`` (no condition but
IS_NULL is true for a missing value), and the null split (present vs missing) is a split of its
own. Every leaf is then one conjunction and the leaves partition the visitors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from sortition.rules import Condition
from sortition.rules.condition import normalize_attribute
from sortition.serving.conditions import js_string


@dataclass(frozen=True)
class Feature:
    """One encoded covariate: ``codes`` (n,) in [0, n_slots); slot ``n_slots - 1`` = missing.

    Numeric: value slot b holds ``edges[b-1] < x <= edges[b]``. Categorical: slot b holds
    ``levels[b]`` (JS spelling, as flag rules compare strings).
    """

    name: str
    categorical: bool
    codes: np.ndarray
    n_slots: int
    edges: tuple = ()
    levels: tuple = ()

    def split_conditions(self, order: np.ndarray, t: int) -> tuple[Condition, Condition]:
        """Conditions of (left, right) for the split after ordered position ``t``."""
        if t == self.n_slots - 2:  # the null split: present vs missing
            return Condition(self.name, "IS_NULL", False), Condition(self.name, "IS_NULL", True)
        if not self.categorical:
            edge = self.edges[int(order[t])]
            return Condition(self.name, "LTE", edge), Condition(self.name, "GT", edge)
        left = [self.levels[int(s)] for s in order[: t + 1]]
        return Condition(self.name, "ONE_OF", left), Condition(self.name, "NOT_ONE_OF", left)


def encode_features(frame: pd.DataFrame, n_bins: int = 64, max_levels: int = 64) -> list[Feature]:
    """Encode every column of ``frame``; ValueError names a column that cannot be split."""
    if not 2 <= n_bins <= 1024:
        raise ValueError(f"n_bins must be in [2, 1024], got {n_bins}")
    features = []
    for name in frame.columns:
        column = frame[name]
        if not isinstance(name, str):
            raise ValueError(f"covariate names must be strings (they become rule attributes), got {name!r}")
        if (ptypes.is_float_dtype(column.dtype) or ptypes.is_integer_dtype(column.dtype)) and not ptypes.is_bool_dtype(
            column.dtype
        ):
            features.append(_numeric(name, column, n_bins))
        else:
            features.append(_categorical(name, column, max_levels))
    return features


def _numeric(name: str, column: pd.Series, n_bins: int) -> Feature:
    x = column.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(x)
    infinite = np.flatnonzero(np.isinf(x))
    if infinite.size:
        raise ValueError(
            f"covariate {name!r} has infinite values (rows {infinite[:5].tolist()}); flag rules cannot "
            "compare them: replace them with NaN (missing) or clip them"
        )
    present = x[~missing]
    if present.size:
        quantiles = np.quantile(present, np.arange(1, n_bins) / n_bins, method="lower")
        edges = np.unique(quantiles)
        edges = edges[edges < present.max()]  # a threshold at the maximum splits nothing off
    else:
        edges = np.empty(0)
    n_slots = edges.size + 2
    codes = np.where(missing, n_slots - 1, np.searchsorted(edges, np.where(missing, 0.0, x), side="left"))
    is_int = ptypes.is_integer_dtype(column.dtype)
    if is_int:
        values = tuple(int(e) for e in edges)
    else:
        distinct = np.unique(present)
        above = distinct[np.searchsorted(distinct, edges, side="right")] if edges.size else edges
        values = tuple(_readable_threshold(float(e), float(a)) for e, a in zip(edges, above))
    return Feature(name, False, codes.astype(np.int32), n_slots, edges=values)


def _readable_threshold(edge: float, above: float) -> float:
    """The shortest decimal c with edge <= c < above: the same partition (x <= c) as the bin edge
    itself, but a rule that reads like ``recency_days <= 3.5``."""
    for digits in range(-6, 18):
        scale = 10.0**digits
        c = math.ceil(edge * scale) / scale
        if edge <= c < above:
            return c
    return edge


def _categorical(name: str, column: pd.Series, max_levels: int) -> Feature:
    # Levels are the JS spellings the flag rules compare; distinct raw values may share one
    # (1 and "1"), so spell first. Homogeneous columns are factorized first, then only the
    # distinct values are spelled.
    homogeneous = isinstance(column.dtype, pd.CategoricalDtype) or ptypes.is_bool_dtype(column.dtype) or (
        pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
    )
    if homogeneous:
        raw_codes, uniques = pd.factorize(column, use_na_sentinel=True)
        spelled_uniques = np.array([js_string(normalize_attribute(u)) for u in uniques], dtype=object)
        level_codes, levels = pd.factorize(spelled_uniques, sort=True)
        codes = np.where(raw_codes < 0, -1, level_codes[np.maximum(raw_codes, 0)] if len(uniques) else -1)
    else:
        spelled = [None if (v := normalize_attribute(x)) is None else js_string(v) for x in column.to_numpy(dtype=object)]
        codes, levels = pd.factorize(pd.Series(spelled, dtype=object), sort=True, use_na_sentinel=True)
    if len(levels) > max_levels:
        raise ValueError(
            f"covariate {name!r} has {len(levels)} levels (more than max_levels={max_levels}); group rare "
            "levels, bin it, or leave it out of covariates="
        )
    n_slots = len(levels) + 1
    codes = np.where(codes < 0, n_slots - 1, codes)
    return Feature(name, True, codes.astype(np.int32), n_slots, levels=tuple(str(v) for v in levels))
