"""Train a bandit model from sufficient statistics computed in the event store (SQL).

The per-action ridge of :mod:`sortition.learning.training` needs only X'WX and X'Wy per action.
:func:`store_statistics` computes them in the store (``sortition.store.bandit_stats``: one scan for
the feature layout, one aggregation for the moments) with exactly the layout the in-memory path
learns (same keys, standardization, category values and missing indicators), and
:func:`model_from_statistics` solves the same ridge. So :func:`train_bandit_from_store` gives the
coefficients of ``train_bandit(store.bandit_rewards(metric))`` (to rounding, about 1e-12) without
loading the events into Python: memory is O(actions x columns^2), not O(events).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sortition.learning.features import (
    GROUPS,
    CategoricalColumn,
    FeatureLayout,
    categorical_value,
    numeric_column,
)
from sortition.learning.model import BanditModel
from sortition.learning.training import (
    SqrtGamma,
    action_coefficients,
    assemble_model,
    check_training,
    solve_ridge,
)


class NoDecisionsError(ValueError):
    """No logged decision matches the store query (nothing to train on)."""


@dataclass(frozen=True, eq=False)
class ActionStatistics:
    """One action's sufficient statistics in its feature layout (p columns).

    Attributes:
        layout: the action's design columns.
        xtwx: (p, p) Σ w x x' with the raw training weights w (1/p clipped, or 1).
        xtwy: (p,) Σ w x y.
        n: number of events; weight_sum: Σ w.
    """

    layout: FeatureLayout
    xtwx: np.ndarray
    xtwy: np.ndarray
    n: int
    weight_sum: float

    def normalized(self) -> tuple[np.ndarray, np.ndarray]:
        """(X'WX, X'Wy) with the weights normalized to mean 1 (what the ridge's l2 is relative to)."""
        scale = self.n / self.weight_sum
        return self.xtwx * scale, self.xtwy * scale

    def coefficients(self, action: str, l2: float):
        """The action's serving coefficients (``ActionCoefficients``) from the ridge solve."""
        A, b = self.normalized()
        return action_coefficients(action, self.layout, solve_ridge(A, b, l2, self.layout.penalized()))


@dataclass(frozen=True, eq=False)
class StoreStatistics:
    """What :func:`store_statistics` returns: per action statistics (actions with at least
    ``min_events_per_action`` events), the event count per action, and the totals for the default
    score (Σ w y / Σ w over all events)."""

    actions: dict[str, ActionStatistics]
    events: dict[str, int]
    weight_sum: float
    weighted_reward_sum: float

    @property
    def n(self) -> int:
        return sum(self.events.values())


def _code_value(code: str) -> str | None:
    """The string the evaluator looks a categorical code up by (None: missing)."""
    return categorical_value(code[1:] if code[0] == "s" else json.loads(code[1:]))


def _layouts(summary: Any, actions: list[str], min_count: int) -> tuple[dict[str, FeatureLayout], dict]:
    """Per action the layout ``fit_layout`` would learn from its events, and per (group, key, value)
    the codes that stringify to that value."""
    numeric: dict[str, dict[str, list]] = {a: {g: [] for g in GROUPS} for a in actions}
    for a, group, key, _, present, mean, sd in summary.numeric:
        if a in numeric:
            numeric[a][group].append(
                numeric_column(group, key, mean if present else 0.0, sd if present else 0.0)
            )
    keys: dict[str, dict[str, set]] = {a: {g: set() for g in GROUPS} for a in actions}
    counts: dict[tuple, Counter] = defaultdict(Counter)
    codes: dict[tuple, set] = defaultdict(set)
    for a, group, key, code, n in summary.categorical:
        if a not in keys:
            continue
        keys[a][group].add(key)
        value = None if code is None else _code_value(code)
        if value is not None:
            counts[(a, group, key)][value] += n
            codes[(group, key, value)].add(code)
    layouts = {}
    for a in actions:
        num_cols, cat_cols = [], []
        for group in GROUPS:
            num_cols += sorted(numeric[a][group], key=lambda c: c.key)
            for key in sorted(keys[a][group]):
                kept = sorted(v for v, c in counts[(a, group, key)].items() if c >= min_count)
                cat_cols.append(CategoricalColumn(group, key, tuple(kept)))
        layouts[a] = FeatureLayout(tuple(num_cols), tuple(cat_cols))
    return layouts, codes


def _union(layouts: dict[str, FeatureLayout], codes: dict) -> tuple[list, list, dict[str, np.ndarray]]:
    """The store's column specs covering every action's layout, and per action the indices of its
    own columns among the union's (its layout is a subsequence of the union's order)."""
    from sortition.store.bandit_stats import CategoricalSpec, NumericSpec

    num_keys = sorted(
        {(c.group, c.key) for lay in layouts.values() for c in lay.numeric},
        key=lambda gk: (GROUPS.index(gk[0]), gk[1]),
    )
    cat_keys = sorted(
        {(c.group, c.key) for lay in layouts.values() for c in lay.categorical},
        key=lambda gk: (GROUPS.index(gk[0]), gk[1]),
    )
    numeric = [
        NumericSpec(
            g,
            k,
            {a: c.mean for a, lay in layouts.items() for c in lay.numeric if (c.group, c.key) == (g, k)},
            {a: c.scale for a, lay in layouts.items() for c in lay.numeric if (c.group, c.key) == (g, k)},
        )
        for g, k in num_keys
    ]
    index: dict[tuple, int] = {("intercept",): 0}
    for g, k in num_keys:
        index[("num", g, k)] = len(index)
        index[("num-missing", g, k)] = len(index)
    categorical = []
    for g, k in cat_keys:
        keepers: dict[str, set] = defaultdict(set)
        for a, lay in layouts.items():
            for c in lay.categorical:
                if (c.group, c.key) == (g, k):
                    for v in c.values:
                        keepers[v].add(a)
        values = sorted(keepers)
        categorical.append(
            CategoricalSpec(
                g, k, tuple((tuple(sorted(codes[(g, k, v)])), frozenset(keepers[v])) for v in values)
            )
        )
        for v in values:
            index[("cat", g, k, v)] = len(index)
        index[("cat-missing", g, k)] = len(index)
    positions = {}
    for a, lay in layouts.items():
        cols = [index[("intercept",)]]
        for c in lay.numeric:
            cols += [index[("num", c.group, c.key)], index[("num-missing", c.group, c.key)]]
        for c in lay.categorical:
            cols += [index[("cat", c.group, c.key, v)] for v in c.values] + [
                index[("cat-missing", c.group, c.key)]
            ]
        positions[a] = np.array(cols)
    return numeric, categorical, positions


def store_statistics(
    store: Any,
    metric: str,
    *,
    flag_key: str | None = None,
    bandit_key: str | None = None,
    window: Any = None,
    aggregate: str = "sum",
    until: Any = None,
    importance_weighting: Literal["ips", "none"] = "ips",
    max_importance_weight: float = 20.0,
    min_events_per_action: int = 1,
    min_category_count: int = 1,
) -> StoreStatistics:
    """Per-action sufficient statistics of ``store.bandit_rewards(metric, ...)``'s events, computed
    in the store (see the module docstring). Raises NoDecisionsError when no decision matches."""
    from sortition.store.bandit_stats import action_moments, attribute_summary
    from sortition.store.records import FieldError, to_utc

    try:
        until_utc = None if until is None else to_utc(until, "until")
    except FieldError as err:
        raise ValueError(f"until: {err.problem}") from None
    summary = attribute_summary(store, flag_key=flag_key, bandit_key=bandit_key, until=until_utc)
    if not summary.events:
        raise NoDecisionsError("no events: train or evaluate on at least one logged bandit event")
    fitted = sorted(a for a, n in summary.events.items() if n >= max(min_events_per_action, 1))
    layouts, codes = _layouts(summary, fitted, min_category_count)
    numeric, categorical, positions = _union(layouts, codes)
    moments = action_moments(
        store,
        metric,
        numeric,
        categorical,
        flag_key=flag_key,
        bandit_key=bandit_key,
        window=window,
        aggregate=aggregate,
        until=until_utc,
        importance_weighting=importance_weighting,
        max_importance_weight=max_importance_weight,
    )
    actions = {}
    for a in fitted:
        m, idx = moments[a], positions[a]
        actions[a] = ActionStatistics(layouts[a], m.xtwx[np.ix_(idx, idx)], m.xtwy[idx], m.n, m.weight_sum)
    return StoreStatistics(
        actions,
        {a: m.n for a, m in sorted(moments.items())},
        float(sum(m.weight_sum for m in moments.values())),
        float(sum(m.weighted_reward_sum for m in moments.values())),
    )


def model_from_statistics(
    stats: StoreStatistics,
    *,
    bandit_key: str = "bandit",
    gamma: float | SqrtGamma = 1.0,
    action_probability_floor: float = 0.0,
    l2: float = 1.0,
    default_action_score: float | None = None,
    model_version: str | None = None,
    model_name: str = "sortition-ridge",
) -> BanditModel:
    """The ridge model of :func:`store_statistics`' output (parameters as ``train_bandit``'s)."""
    check_training(action_probability_floor, l2, 1.0)
    coefficients = {a: s.coefficients(a, l2) for a, s in stats.actions.items()}
    if default_action_score is None:
        default_action_score = stats.weighted_reward_sum / stats.weight_sum
    return assemble_model(
        coefficients,
        n_events=stats.n,
        default_action_score=default_action_score,
        bandit_key=bandit_key,
        gamma=gamma,
        action_probability_floor=action_probability_floor,
        model_version=model_version,
        model_name=model_name,
    )


def train_bandit_from_store(
    store: Any,
    metric: str,
    *,
    flag_key: str | None = None,
    bandit_key_filter: str | None = None,
    window: Any = None,
    aggregate: str = "sum",
    until: Any = None,
    bandit_key: str = "bandit",
    gamma: float | SqrtGamma = 1.0,
    action_probability_floor: float = 0.0,
    l2: float = 1.0,
    importance_weighting: Literal["ips", "none"] = "ips",
    max_importance_weight: float = 20.0,
    min_events_per_action: int = 1,
    min_category_count: int = 1,
    default_action_score: float | None = None,
    model_version: str | None = None,
    model_name: str = "sortition-ridge",
) -> BanditModel:
    """``train_bandit(store.bandit_rewards(metric, flag_key=..., bandit_key=bandit_key_filter, ...))``,
    computed in the store: the events never come into Python.

    ``bandit_key_filter`` selects the logged decisions by their banditKey; ``bandit_key`` names the
    trained model. The other parameters are ``train_bandit``'s and ``bandit_rewards``'.
    """
    check_training(action_probability_floor, l2, max_importance_weight)
    stats = store_statistics(
        store,
        metric,
        flag_key=flag_key,
        bandit_key=bandit_key_filter,
        window=window,
        aggregate=aggregate,
        until=until,
        importance_weighting=importance_weighting,
        max_importance_weight=max_importance_weight,
        min_events_per_action=min_events_per_action,
        min_category_count=min_category_count,
    )
    return model_from_statistics(
        stats,
        bandit_key=bandit_key,
        gamma=gamma,
        action_probability_floor=action_probability_floor,
        l2=l2,
        default_action_score=default_action_score,
        model_version=model_version,
        model_name=model_name,
    )
