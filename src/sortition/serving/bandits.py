"""Contextual-bandit evaluation: linear scores, inverse-gap weighting, deterministic selection.

Pure functions, exactly the semantics of Eppo's bandit evaluator:

* :func:`score_actions`: per action ``intercept + Σ subject numeric + Σ subject categorical
  + Σ action numeric + Σ action categorical`` (each group summed from 0 in the model's
  coefficient order, then added in that order); an action without coefficients scores
  ``default_action_score``.
* :func:`action_weights`: every non-top action gets ``max(1 / (n + gamma * (top - score)),
  floor / n)``; the top action (highest score, ties to the smaller key) gets
  ``max(1 - Σ others, 0)``.
* :func:`select_action`: actions shuffled by ``shard(f"{flag}-{subject}-{action}", 10000)``
  (ties by key), then the first whose running weight is strictly greater than
  ``shard(f"{flag}-{subject}", 10000) / 10000``; if rounding selects none, the last one.

The order in which a caller lists actions never changes a result: weights are accumulated in
key order (keys compared as JavaScript does, by UTF-16 code units).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sortition.serving.attributes import Attributes
from sortition.serving.conditions import js_string
from sortition.serving.sharding import BANDIT_ASSIGNMENT_SHARDS, shard

# (attribute key, coefficient, missing-value coefficient)
NumericTerm = tuple[str, float, float]
# (attribute key, {string value: coefficient}, missing-value coefficient)
CategoricalTerm = tuple[str, Mapping[str, float], float]


@dataclass(frozen=True, slots=True)
class ActionCoefficients:
    """One action's linear model (the coefficient lists keep the configuration's order)."""

    action_key: str
    intercept: float
    subject_numeric: tuple[NumericTerm, ...] = ()
    subject_categorical: tuple[CategoricalTerm, ...] = ()
    action_numeric: tuple[NumericTerm, ...] = ()
    action_categorical: tuple[CategoricalTerm, ...] = ()


@dataclass(frozen=True, slots=True)
class BanditModel:
    """A bandit's model data (the ``modelData`` object of the bandit-model JSON).

    Attributes:
        gamma: inverse-gap weighting strength (>= 0; larger = greedier).
        action_probability_floor: total floor; each action gets at least ``floor / n_actions``.
        default_action_score: score of an action the model has no coefficients for.
        coefficients: action key -> :class:`ActionCoefficients`.
        bandit_key, model_version: identification, carried into events.
    """

    gamma: float
    action_probability_floor: float
    default_action_score: float
    coefficients: Mapping[str, ActionCoefficients]
    bandit_key: str = ""
    model_version: str = ""


@dataclass(frozen=True, slots=True)
class BanditEvaluation:
    """The chosen action for one subject, with its score, probability and optimality gap."""

    flag_key: str
    subject_key: str
    action_key: str
    action_score: float
    action_weight: float
    gamma: float
    optimality_gap: float
    subject_attributes: Attributes
    action_attributes: Attributes


# ---------------------------------------------------------------- parsing


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: expected a number, got {value!r}")
    return float(value)


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected a string, got {value!r}")
    return value


def _list(value: Any, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
    return value


def _numeric_terms(items: Any, path: str) -> tuple[NumericTerm, ...]:
    terms = []
    for i, item in enumerate(_list(items, path)):
        p = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{p}: expected an object, got {item!r}")
        terms.append(
            (
                _string(item.get("attributeKey"), f"{p}.attributeKey"),
                _number(item.get("coefficient"), f"{p}.coefficient"),
                _number(item.get("missingValueCoefficient"), f"{p}.missingValueCoefficient"),
            )
        )
    return tuple(terms)


def _categorical_terms(items: Any, path: str) -> tuple[CategoricalTerm, ...]:
    terms = []
    for i, item in enumerate(_list(items, path)):
        p = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{p}: expected an object, got {item!r}")
        values = item.get("valueCoefficients")
        if not isinstance(values, Mapping):
            raise ValueError(f"{p}.valueCoefficients: expected an object, got {values!r}")
        table = {
            _string(k, f"{p}.valueCoefficients key"): _number(v, f"{p}.valueCoefficients.{k}")
            for k, v in values.items()
        }
        terms.append(
            (
                _string(item.get("attributeKey"), f"{p}.attributeKey"),
                MappingProxyType(table),
                _number(item.get("missingValueCoefficient"), f"{p}.missingValueCoefficient"),
            )
        )
    return tuple(terms)


def parse_bandit_model(data: Mapping[str, Any], path: str = "modelData") -> BanditModel:
    """Build a :class:`BanditModel` from a ``modelData`` object, or from a whole bandit entry
    ``{banditKey, modelVersion, modelData}``.

    Raises:
        ValueError: naming the JSON path of the first bad field.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected an object, got {type(data).__name__}")
    bandit_key = model_version = ""
    if "modelData" in data:
        bandit_key = str(data.get("banditKey") or "")
        model_version = js_string(data.get("modelVersion")) if data.get("modelVersion") is not None else ""
        path = f"{path}.modelData" if path != "modelData" else path
        data = data["modelData"]
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected an object, got {type(data).__name__}")
    gamma = _number(data.get("gamma"), f"{path}.gamma")
    floor = _number(data.get("actionProbabilityFloor", 0.0), f"{path}.actionProbabilityFloor")
    default = _number(data.get("defaultActionScore", 0.0), f"{path}.defaultActionScore")
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"{path}.gamma: must be a finite number >= 0, got {gamma!r}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"{path}.actionProbabilityFloor: must be in [0, 1], got {floor!r}")
    raw = data.get("coefficients") or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}.coefficients: expected an object, got {type(raw).__name__}")
    coefficients = {}
    for key, c in raw.items():
        p = f"{path}.coefficients.{key}"
        if not isinstance(c, Mapping):
            raise ValueError(f"{p}: expected an object, got {c!r}")
        coefficients[key] = ActionCoefficients(
            action_key=key,
            intercept=_number(c.get("intercept", 0.0), f"{p}.intercept"),
            subject_numeric=_numeric_terms(c.get("subjectNumericCoefficients"), f"{p}.subjectNumericCoefficients"),
            subject_categorical=_categorical_terms(
                c.get("subjectCategoricalCoefficients"), f"{p}.subjectCategoricalCoefficients"
            ),
            action_numeric=_numeric_terms(c.get("actionNumericCoefficients"), f"{p}.actionNumericCoefficients"),
            action_categorical=_categorical_terms(
                c.get("actionCategoricalCoefficients"), f"{p}.actionCategoricalCoefficients"
            ),
        )
    return BanditModel(gamma, floor, default, MappingProxyType(coefficients), bandit_key, model_version)


# ---------------------------------------------------------------- scoring

_isfinite = math.isfinite


def _numeric_sum(terms: tuple[NumericTerm, ...], values: Mapping[str, Any]) -> float:
    total = 0.0
    for key, coefficient, missing in terms:
        v = values.get(key)
        cls = v.__class__
        if (cls is float or cls is int) and _isfinite(v):
            total += v * coefficient
        elif v is not None and cls is not bool and isinstance(v, (int, float)) and _isfinite(v):
            total += float(v) * coefficient
        else:
            total += missing
    return total


def _categorical_sum(terms: tuple[CategoricalTerm, ...], values: Mapping[str, Any]) -> float:
    total = 0.0
    for key, table, missing in terms:
        v = values.get(key)
        if v is None:
            total += missing
            continue
        if v.__class__ is not str:
            v = js_string(v)
        c = table.get(v)
        total += missing if c is None else c
    return total


def score_action(model: BanditModel, subject: Attributes, action_key: str, action: Attributes) -> float:
    """One action's score (see the module docstring)."""
    c = model.coefficients.get(action_key)
    if c is None:
        return model.default_action_score
    score = c.intercept
    score += _numeric_sum(c.subject_numeric, subject.numeric)
    score += _categorical_sum(c.subject_categorical, subject.categorical)
    score += _numeric_sum(c.action_numeric, action.numeric)
    score += _categorical_sum(c.action_categorical, action.categorical)
    return score


def score_actions(
    model: BanditModel,
    subject_attributes: Attributes | Mapping[str, Any] | None,
    actions: Mapping[str, Attributes | Mapping[str, Any] | None],
) -> dict[str, float]:
    """Score every action: action key -> score, in the caller's order."""
    subject = Attributes.coerce(subject_attributes)
    return {key: score_action(model, subject, key, Attributes.coerce(a)) for key, a in actions.items()}


# ---------------------------------------------------------------- weighting


def _order_key(keys: list[str]):
    """A sort key comparing strings as JavaScript does (UTF-16 code units)."""
    if all(k.isascii() for k in keys):
        return None
    return lambda k: k.encode("utf-16-be")


def _js_sorted(keys) -> list[str]:
    keys = list(keys)
    return sorted(keys, key=_order_key(keys))


def top_action(scores: Mapping[str, float]) -> tuple[str, float]:
    """The highest-scoring action; ties go to the smaller key (JS string order)."""
    if not scores:
        raise ValueError("scores is empty: there is no top action")
    keys = _js_sorted(scores)
    best = keys[0]
    best_score = scores[best]
    for k in keys[1:]:
        if scores[k] > best_score:
            best, best_score = k, scores[k]
    return best, best_score


def action_weights(
    scores: Mapping[str, float], gamma: float, action_probability_floor: float
) -> dict[str, float]:
    """Inverse-gap weights (probabilities summing to 1), key -> weight in key order.

    Non-top action ``a``: ``max(1 / (n + gamma * (top - score_a)), floor / n)``; top action:
    ``max(1 - Σ non-top, 0)``. Empty ``scores`` gives ``{}``.
    """
    if not scores:
        return {}
    keys = _js_sorted(scores)
    best = keys[0]
    best_score = scores[best]
    for k in keys[1:]:
        if scores[k] > best_score:
            best, best_score = k, scores[k]
    n = len(keys)
    minimum = action_probability_floor / n
    weights: dict[str, float] = {}
    cumulative = 0.0
    for k in keys:
        if k == best:
            continue
        w = 1 / (n + gamma * (best_score - scores[k]))
        if not w >= minimum:  # also catches NaN
            w = minimum
        cumulative += w
        weights[k] = w
    weights[best] = max(1 - cumulative, 0.0)
    return {k: weights[k] for k in keys}


def shuffled_actions(flag_key: str, subject_key: str, keys) -> list[str]:
    """Actions in the subject's deterministic order: by ``shard(f"{flag}-{subject}-{key}")``, ties by key."""
    keys = list(keys)
    prefix = f"{flag_key}-{subject_key}-"
    order = _order_key(keys)
    if order is None:
        return [k for _, k in sorted((shard(prefix + k, BANDIT_ASSIGNMENT_SHARDS), k) for k in keys)]
    decorated = sorted((shard(prefix + k, BANDIT_ASSIGNMENT_SHARDS), order(k), k) for k in keys)
    return [k for _, _, k in decorated]


def select_action(flag_key: str, subject_key: str, weights: Mapping[str, float]) -> str:
    """The action this subject gets under ``weights`` (see the module docstring)."""
    if not weights:
        raise ValueError("weights is empty: there is no action to select")
    shuffled = shuffled_actions(flag_key, subject_key, weights)
    threshold = shard(f"{flag_key}-{subject_key}", BANDIT_ASSIGNMENT_SHARDS) / BANDIT_ASSIGNMENT_SHARDS
    cumulative = 0.0
    for k in shuffled:
        cumulative += weights[k]
        if cumulative > threshold:
            return k
    return shuffled[-1]  # rounding left nothing selected: take the last (never raise)


def evaluate_bandit(
    flag_key: str,
    subject_key: str,
    subject_attributes: Attributes | Mapping[str, Any] | None,
    actions: Mapping[str, Attributes | Mapping[str, Any] | None],
    model: BanditModel,
) -> BanditEvaluation:
    """Score, weigh and select one action for one subject.

    Args:
        actions: action key -> attributes (a flat dict or :class:`Attributes`); not empty.

    Raises:
        ValueError: when ``actions`` is empty (the Client checks this and returns no action).
    """
    if not actions:
        raise ValueError("actions is empty: pass at least one action")
    subject = Attributes.coerce(subject_attributes)
    action_attrs = {k: Attributes.coerce(a) for k, a in actions.items()}
    scores = {k: score_action(model, subject, k, a) for k, a in action_attrs.items()}
    weights = action_weights(scores, model.gamma, model.action_probability_floor)
    chosen = select_action(flag_key, subject_key, weights)
    top = max(scores.values())
    return BanditEvaluation(
        flag_key=flag_key,
        subject_key=subject_key,
        action_key=chosen,
        action_score=scores[chosen],
        action_weight=weights[chosen],
        gamma=model.gamma,
        optimality_gap=top - scores[chosen],
        subject_attributes=subject,
        action_attributes=action_attrs[chosen],
    )
