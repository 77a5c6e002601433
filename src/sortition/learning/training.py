"""Train a bandit model from logged events: per-action ridge regression in closed form.

Importance weighting (the choice, documented in docs/learning.md): each action's regression only
sees the contexts where the logger chose that action, in the proportions the logger chose it. When
the linear model is right this changes nothing in expectation; when it is not, the fit is good
where the logger sent that action and poor elsewhere, which is exactly where a new policy may send
it. Weighting each event by 1 / action_probability (clipped at ``max_importance_weight``, then
normalized to mean 1 within the action) makes every action's fit target the whole population of
contexts, at a variance cost the clip bounds. ``importance_weighting="none"`` turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from sortition.learning.events import BanditEvents
from sortition.learning.features import FeatureLayout, fit_layout
from sortition.learning.model import BanditModel
from sortition.serving.bandits import ActionCoefficients


@dataclass(frozen=True)
class SqrtGamma:
    """SquareCB-style schedule: gamma = scale * sqrt(t), t = number of training events.

    Greedier as evidence accumulates; ``minimum`` keeps a cold start from being exactly uniform
    when that is not wanted (default 0: an empty model weighs actions uniformly anyway).
    """

    scale: float = 1.0
    minimum: float = 0.0

    def __post_init__(self) -> None:
        if not (self.scale >= 0 and math.isfinite(self.scale)):
            raise ValueError(f"SqrtGamma.scale is {self.scale!r}; it must be a finite number >= 0")

    def __call__(self, n_events: int) -> float:
        return max(self.minimum, self.scale * math.sqrt(max(n_events, 0)))


def resolve_gamma(gamma: float | SqrtGamma, n_events: int) -> float:
    """The gamma to publish after training on ``n_events`` events."""
    if isinstance(gamma, SqrtGamma):
        return gamma(n_events)
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not gamma >= 0:
        raise ValueError(f"gamma is {gamma!r}; pass a number >= 0 or SqrtGamma(scale)")
    return float(gamma)


def ridge(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, penalized: np.ndarray) -> np.ndarray:
    """Weighted ridge regression in closed form.

    Minimizes sum_i w_i (y_i - X_i b)^2 + l2 * sum_{j penalized} b_j^2.

    Args:
        X: (n, p) design; y: (n,) targets; w: (n,) non-negative weights;
        l2: penalty >= 0; penalized: (p,) bool, False for the intercept.
    Returns: (p,) coefficients.
    """
    Xw = X * w[:, None]
    return solve_ridge(X.T @ Xw, Xw.T @ y, l2, penalized)


def solve_ridge(xtwx: np.ndarray, xtwy: np.ndarray, l2: float, penalized: np.ndarray) -> np.ndarray:
    """The ridge coefficients from the sufficient statistics: (X'WX + l2 P + 1e-10 I)^-1 X'Wy.

    Args: xtwx (p, p), xtwy (p,), l2 >= 0, penalized (p,) bool. Returns (p,); ``xtwx`` is not changed.

    A column that is 0 in every event (the missing indicator of an attribute always present, a
    category not seen yet) has a zero row and column in X'WX and 0 in X'Wy: its coefficient is
    exactly 0 and the others solve without it, so only the columns with data enter the O(p^3) solve.
    """
    xtwx = np.asarray(xtwx, dtype=np.float64)
    active = np.flatnonzero(np.diagonal(xtwx) != 0)
    beta = np.zeros(len(xtwy))
    if active.size == 0:
        return beta
    A = xtwx[np.ix_(active, active)]  # a copy
    A[np.diag_indices_from(A)] += l2 * penalized[active] + 1e-10  # tiny jitter: collinear one-hot blocks
    b = np.asarray(xtwy, dtype=np.float64)[active]
    try:
        beta[active] = np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        beta[active] = np.linalg.lstsq(A, b, rcond=None)[0]
    return beta


def importance_weights(probability: np.ndarray, how: Literal["ips", "none"], max_weight: float) -> np.ndarray:
    """(n,) training weights: 1/p clipped at max_weight (``"ips"``) or ones (``"none"``)."""
    if how == "none":
        return np.ones_like(probability)
    if how == "ips":
        return np.minimum(1.0 / probability, max_weight)
    raise ValueError(f"importance_weighting is {how!r}; use 'ips' or 'none'")


def action_coefficients(action: str, layout: FeatureLayout, beta: np.ndarray) -> ActionCoefficients:
    """One action's serving coefficients from its fitted (p,) vector in ``layout``'s columns."""
    raw = layout.coefficients(beta)
    num = lambda g: tuple(raw[f"{g}_numeric"])  # noqa: E731
    cat = lambda g: tuple((k, MappingProxyType(v), m) for k, v, m in raw[f"{g}_categorical"])  # noqa: E731
    return ActionCoefficients(
        action_key=action,
        intercept=raw["intercept"],
        subject_numeric=num("subject"),
        subject_categorical=cat("subject"),
        action_numeric=num("action"),
        action_categorical=cat("action"),
    )


def check_training(action_probability_floor: float, l2: float, max_importance_weight: float) -> None:
    """Validate the training parameters both training paths share (raises ValueError)."""
    if not (0.0 <= action_probability_floor <= 1.0):
        raise ValueError(f"action_probability_floor is {action_probability_floor!r}; it must be in [0, 1]")
    if not (l2 >= 0 and math.isfinite(l2)):
        raise ValueError(f"l2 is {l2!r}; it must be a finite number >= 0")
    if not max_importance_weight >= 1:
        raise ValueError(f"max_importance_weight is {max_importance_weight!r}; it must be >= 1")


def assemble_model(
    coefficients: dict[str, ActionCoefficients], *, n_events: int, default_action_score: float,
    bandit_key: str, gamma: float | SqrtGamma, action_probability_floor: float, model_version: str | None,
    model_name: str,
) -> BanditModel:
    """The BanditModel of fitted coefficients (``model_version`` None: the number of events)."""
    return BanditModel(
        bandit_key=bandit_key,
        gamma=resolve_gamma(gamma, n_events),
        default_action_score=float(default_action_score),
        action_probability_floor=float(action_probability_floor),
        coefficients=coefficients,
        model_version=model_version if model_version is not None else str(n_events),
        model_name=model_name,
        n_events=n_events,
    )


def train_bandit(
    events: Any,
    *,
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
    """Fit one ridge regression of reward per action on subject and action attributes.

    Args:
        events: BanditEvents, a DataFrame or a list of dicts (see ``BanditEvents.from_records``).
        bandit_key: the model's banditKey.
        gamma: a fixed gamma, or ``SqrtGamma(scale)`` for gamma = scale * sqrt(n events).
        action_probability_floor: published as is; the evaluator gives each action at least
            floor / n_actions.
        l2: ridge penalty on standardized features (the intercept is not penalized); in units of
            events, since weights are normalized to mean 1 within each action.
        importance_weighting: ``"ips"`` (weights 1/p, clipped) or ``"none"``; see module docs.
        max_importance_weight: clip for the 1/p weights.
        min_events_per_action: actions with fewer events get no coefficients (they score
            ``default_action_score``).
        min_category_count: a categorical value needs this many events to get its own coefficient.
        default_action_score: score for actions without coefficients; None = the (weighted) mean
            reward over all events, so an unseen action is neither favoured nor shunned.
        model_version: written to the JSON; None = the number of training events.

    Returns: BanditModel, with ``n_events`` set. Rewards may be continuous or 0/1 (a linear
    probability model).
    """
    ev = BanditEvents.coerce(events)
    check_training(action_probability_floor, l2, max_importance_weight)
    weights = importance_weights(ev.action_probability, importance_weighting, max_importance_weight)
    coefficients: dict[str, ActionCoefficients] = {}
    for action in ev.actions:
        rows = np.flatnonzero(ev.action == action)
        if rows.size < max(min_events_per_action, 1):
            continue
        sub = ev.take(rows)
        numeric = {"subject": sub.subject_numeric, "action": sub.action_numeric}
        categorical = {"subject": sub.subject_categorical, "action": sub.action_categorical}
        layout = fit_layout(numeric, categorical, min_count=min_category_count)
        X = layout.encode(numeric, categorical)
        w = weights[rows] / weights[rows].mean()
        beta = ridge(X, sub.reward, w, l2, layout.penalized())
        coefficients[action] = action_coefficients(action, layout, beta)
    if default_action_score is None:
        default_action_score = float(np.average(ev.reward, weights=weights))
    return assemble_model(
        coefficients, n_events=ev.n, default_action_score=default_action_score, bandit_key=bandit_key,
        gamma=gamma, action_probability_floor=action_probability_floor, model_version=model_version,
        model_name=model_name,
    )


def cold_start_model(
    bandit_key: str = "bandit",
    gamma: float | SqrtGamma = 1.0,
    action_probability_floor: float = 0.0,
    default_action_score: float = 0.0,
) -> BanditModel:
    """An empty model: every action scores the default, so actions are weighed uniformly."""
    return BanditModel(
        bandit_key=bandit_key,
        gamma=resolve_gamma(gamma, 0),
        default_action_score=default_action_score,
        action_probability_floor=action_probability_floor,
        coefficients={},
        model_version="cold start",
    )
