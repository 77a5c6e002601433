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
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, NamedTuple

from sortition.serving.attributes import Attributes, numeric_value
from sortition.serving.conditions import js_string
from sortition.serving.events import now_rfc3339
from sortition.serving.sharding import TOTAL_SHARDS, salted, shard
from sortition.serving.validation import ConfigurationError, arr, number, obj, show, string

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
    """A contextual bandit's model: what the evaluator scores, what training produces, and one
    entry of a bandit-models-v1 file (:meth:`to_json` / :meth:`from_json`). The one model type
    (``sortition.learning.BanditModel`` is this class).

    Attributes:
        bandit_key: the bandit's key (also the flag variation value that routes to it).
        gamma: inverse-gap weighting strength (finite, >= 0; 0 = uniform, larger = greedier).
        default_action_score: score of an action the model has no coefficients for.
        action_probability_floor: total floor in [0, 1]; each action gets at least ``floor / n``.
        coefficients: action key -> :class:`ActionCoefficients` (read-only mapping).
        model_version, model_name, updated_at: metadata, carried into events and the JSON.
        n_events: events the model was trained on (0 when read from JSON; not serialized).

    Raises:
        ConfigurationError: (a ``ValueError``) for a bad ``gamma`` or floor
            (:func:`check_gamma_floor`, the one check).
    """

    bandit_key: str
    gamma: float
    default_action_score: float
    action_probability_floor: float
    coefficients: Mapping[str, ActionCoefficients]
    model_version: str = "1"
    model_name: str = "sortition-ridge"
    updated_at: str = field(default_factory=now_rfc3339)
    n_events: int = field(default=0, compare=False)  # training metadata, not part of the model

    def __post_init__(self) -> None:
        check_gamma_floor(self.gamma, self.action_probability_floor, "model")
        if not isinstance(self.coefficients, MappingProxyType):
            object.__setattr__(self, "coefficients", MappingProxyType(dict(self.coefficients)))

    def model_data(self) -> dict[str, Any]:
        """The ``modelData`` object."""
        return {
            "gamma": self.gamma,
            "defaultActionScore": self.default_action_score,
            "actionProbabilityFloor": self.action_probability_floor,
            "coefficients": {k: action_coefficients_json(c) for k, c in self.coefficients.items()},
        }

    def to_json(self) -> dict[str, Any]:
        """This model's entry in a bandit-models-v1 file's ``bandits`` object."""
        return {
            "banditKey": self.bandit_key,
            "modelName": self.model_name,
            "updatedAt": self.updated_at,
            "modelVersion": self.model_version,
            "modelData": self.model_data(),
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> BanditModel:
        """Read one entry ``{banditKey, modelVersion, modelData, ...}`` of a bandit-models-v1 file."""
        if not isinstance(entry, Mapping) or "modelData" not in entry:
            raise ConfigurationError("bandits", "a bandit model entry needs 'banditKey' and 'modelData' "
                                     "(bandit-models-v1)")
        return parse_bandit_model(entry, path=f"bandits.{_optional_text(entry.get('banditKey'), 'banditKey')}")

    def serving_model(self) -> BanditModel:
        """This model (kept for callers of the former learning-side type)."""
        return self


def _numeric_json(terms: tuple[NumericTerm, ...]) -> list[dict[str, Any]]:
    return [{"attributeKey": k, "coefficient": c, "missingValueCoefficient": m} for k, c, m in terms]


def _categorical_json(terms: tuple[CategoricalTerm, ...]) -> list[dict[str, Any]]:
    return [{"attributeKey": k, "valueCoefficients": dict(v), "missingValueCoefficient": m} for k, v, m in terms]


def action_coefficients_json(c: ActionCoefficients) -> dict[str, Any]:
    """One action's entry of ``modelData.coefficients``."""
    return {
        "actionKey": c.action_key,
        "intercept": c.intercept,
        "actionNumericCoefficients": _numeric_json(c.action_numeric),
        "actionCategoricalCoefficients": _categorical_json(c.action_categorical),
        "subjectNumericCoefficients": _numeric_json(c.subject_numeric),
        "subjectCategoricalCoefficients": _categorical_json(c.subject_categorical),
    }


class BanditEvaluation(NamedTuple):
    """The chosen action for one subject, with its score, probability and optimality gap.

    An immutable record (a NamedTuple: built on every request, and cheaper than a dataclass).
    ``action_weight`` is the probability with which this action was chosen (the propensity).
    """

    flag_key: str
    subject_key: str
    action_key: str
    action_score: float
    action_weight: float
    gamma: float
    optimality_gap: float
    subject_attributes: Attributes | Mapping[str, Any] | None  # as the caller gave them
    action_attributes: Attributes | Mapping[str, Any] | None


# ---------------------------------------------------------------- parsing


def check_gamma_floor(gamma: float, floor: float, path: str = "modelData") -> None:
    """The one check of a model's parameters: ``gamma`` finite and >= 0, ``floor`` in [0, 1].

    Raises:
        ConfigurationError: naming ``path.gamma`` or ``path.actionProbabilityFloor``.
    """
    try:
        good = isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and math.isfinite(gamma) \
            and gamma >= 0
    except OverflowError:  # an int beyond float range
        good = False
    if not good:
        raise ConfigurationError(f"{path}.gamma", f"must be a finite number >= 0, got {show(gamma)}")
    if not (isinstance(floor, (int, float)) and 0.0 <= floor <= 1.0):
        raise ConfigurationError(f"{path}.actionProbabilityFloor", f"must be in [0, 1], got {show(floor)}")


def _optional_text(value: Any, path: str) -> str:
    """A key or version: a string, or a number written as JavaScript would; ``""`` when absent."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return js_string(value)
    return string(value, path)


def _numeric_terms(items: Any, path: str) -> tuple[NumericTerm, ...]:
    terms = []
    for i, item in enumerate(arr(items, path, null_ok=True)):
        p = f"{path}[{i}]"
        item = obj(item, p)
        terms.append(
            (
                string(item.get("attributeKey"), f"{p}.attributeKey"),
                number(item.get("coefficient"), f"{p}.coefficient"),
                number(item.get("missingValueCoefficient"), f"{p}.missingValueCoefficient"),
            )
        )
    return tuple(terms)


def _categorical_terms(items: Any, path: str) -> tuple[CategoricalTerm, ...]:
    terms = []
    for i, item in enumerate(arr(items, path, null_ok=True)):
        p = f"{path}[{i}]"
        item = obj(item, p)
        values = obj(item.get("valueCoefficients"), f"{p}.valueCoefficients")
        table = {k: number(v, f"{p}.valueCoefficients.{k}") for k, v in values.items()}
        terms.append(
            (
                string(item.get("attributeKey"), f"{p}.attributeKey"),
                MappingProxyType(table),
                number(item.get("missingValueCoefficient"), f"{p}.missingValueCoefficient"),
            )
        )
    return tuple(terms)


def parse_bandit_model(data: Mapping[str, Any], path: str = "modelData") -> BanditModel:
    """Build a :class:`BanditModel` from a ``modelData`` object, or from a whole bandit entry
    ``{banditKey, modelVersion, modelData}``.

    Raises:
        ConfigurationError: (a ``ValueError``) naming the JSON path of the first bad field.
    """
    data = obj(data, path)
    bandit_key = model_version = model_name = updated_at = ""
    if "modelData" in data:
        bandit_key = _optional_text(data.get("banditKey"), f"{path}.banditKey")
        model_version = _optional_text(data.get("modelVersion"), f"{path}.modelVersion")
        model_name = _optional_text(data.get("modelName"), f"{path}.modelName")
        updated_at = _optional_text(data.get("updatedAt"), f"{path}.updatedAt")
        path = f"{path}.modelData" if path != "modelData" else path
        data = obj(data["modelData"], path)
    gamma = number(data.get("gamma"), f"{path}.gamma")
    floor = number(data.get("actionProbabilityFloor", 0.0), f"{path}.actionProbabilityFloor")
    default = number(data.get("defaultActionScore", 0.0), f"{path}.defaultActionScore")
    check_gamma_floor(gamma, floor, path)
    raw = obj(data.get("coefficients") or {}, f"{path}.coefficients")
    coefficients = {}
    for key, c in raw.items():
        p = f"{path}.coefficients.{key}"
        c = obj(c, p)
        coefficients[key] = ActionCoefficients(
            action_key=key,
            intercept=number(c.get("intercept", 0.0), f"{p}.intercept"),
            subject_numeric=_numeric_terms(c.get("subjectNumericCoefficients"), f"{p}.subjectNumericCoefficients"),
            subject_categorical=_categorical_terms(
                c.get("subjectCategoricalCoefficients"), f"{p}.subjectCategoricalCoefficients"
            ),
            action_numeric=_numeric_terms(c.get("actionNumericCoefficients"), f"{p}.actionNumericCoefficients"),
            action_categorical=_categorical_terms(
                c.get("actionCategoricalCoefficients"), f"{p}.actionCategoricalCoefficients"
            ),
        )
    return BanditModel(bandit_key, gamma, default, floor, MappingProxyType(coefficients), model_version,
                       model_name, updated_at)


def parse_bandit_models(document: Mapping[str, Any], path: str = "bandits") -> dict[str, BanditModel]:
    """Every model of a bandit-models-v1 document ``{"bandits": {key: {banditKey, modelVersion,
    modelData}}}``, by key (an entry without its own ``banditKey`` takes the key).

    Raises:
        ConfigurationError: (a ``ValueError``) naming the JSON path of the first bad field.
    """
    entries = obj(obj(document, path).get("bandits", {}), f"{path}.bandits")
    models = {}
    for key, entry in entries.items():
        model = parse_bandit_model(obj(entry, f"{path}.{key}"), f"{path}.{key}")
        models[key] = model if model.bandit_key else replace(model, bandit_key=key)
    return models


# ---------------------------------------------------------------- scoring

_isfinite = math.isfinite
_EMPTY: Mapping[str, Any] = MappingProxyType({})

# An attributes view: (numeric group, categorical group, from a flat dict?). A flat dict is
# read in place: its numbers are the numeric group, its strings/bools the categorical group.
View = tuple[Mapping[str, Any], Mapping[str, Any], bool]


def attributes_view(attributes: Attributes | Mapping[str, Any] | None) -> View:
    if attributes.__class__ is dict:
        return attributes, attributes, True
    if isinstance(attributes, Attributes):
        return attributes.numeric, attributes.categorical, False
    if attributes is None:
        return _EMPTY, _EMPTY, False
    if isinstance(attributes, Mapping):
        return attributes, attributes, True
    raise TypeError(f"attributes must be a dict or Attributes, got {type(attributes).__name__}")


def _numeric_sum(terms: tuple[NumericTerm, ...], values: Mapping[str, Any]) -> float:
    total = 0.0
    for key, coefficient, missing in terms:
        v = values.get(key)
        cls = v.__class__
        if cls is float or cls is int:
            try:
                if _isfinite(v):
                    total += v * coefficient
                    continue
            except OverflowError:  # an int beyond float range is missing, and only it
                pass
            total += missing
        else:
            x = numeric_value(v)  # int/float subclasses count as numbers; bool and others: missing
            total += missing if x is None else float(x) * coefficient
    return total


def categorical_key(v: Any, flat: bool) -> str | None:
    """The string a categorical coefficient is looked up by; ``None`` when missing."""
    if v is None:
        return None
    if v.__class__ is str:
        return v
    if flat and not isinstance(v, bool) and isinstance(v, (int, float)):
        return None  # a number in a flat dict belongs to the numeric group
    return js_string(v)


def _categorical_sum(terms: tuple[CategoricalTerm, ...], values: Mapping[str, Any], flat: bool = False) -> float:
    total = 0.0
    for key, table, missing in terms:
        v = values.get(key)
        if v is None:
            total += missing
            continue
        if v.__class__ is not str:
            if flat and not isinstance(v, (bool, str)) and isinstance(v, (int, float)):
                total += missing  # a number in a flat dict belongs to the numeric group
                continue
            v = js_string(v)
        c = table.get(v)
        total += missing if c is None else c
    return total


def _score(model: BanditModel, subject: View, action_key: str, action: View) -> float:
    c = model.coefficients.get(action_key)
    if c is None:
        return model.default_action_score
    # Each group is summed from 0 and then added, in the reference's order (an empty group
    # adds 0.0, exactly as summing nothing does); empty groups skip the call.
    score = c.intercept
    score += _numeric_sum(c.subject_numeric, subject[0]) if c.subject_numeric else 0.0
    score += _categorical_sum(c.subject_categorical, subject[1], subject[2]) if c.subject_categorical else 0.0
    score += _numeric_sum(c.action_numeric, action[0]) if c.action_numeric else 0.0
    score += _categorical_sum(c.action_categorical, action[1], action[2]) if c.action_categorical else 0.0
    return score


def score_action(
    model: BanditModel,
    subject_attributes: Attributes | Mapping[str, Any] | None,
    action_key: str,
    action_attributes: Attributes | Mapping[str, Any] | None,
) -> float:
    """One action's score (see the module docstring)."""
    return _score(model, attributes_view(subject_attributes), action_key, attributes_view(action_attributes))


def score_actions(
    model: BanditModel,
    subject_attributes: Attributes | Mapping[str, Any] | None,
    actions: Mapping[str, Attributes | Mapping[str, Any] | None],
) -> dict[str, float]:
    """Score every action: action key -> score, in the caller's order.

    Attributes are a flat dict (numbers numeric; strings/bools categorical; None missing) or
    :class:`Attributes` (the caller's grouping kept).
    """
    subject = attributes_view(subject_attributes)
    return {key: _score(model, subject, key, attributes_view(a)) for key, a in actions.items()}


# ---------------------------------------------------------------- weighting


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


def _js_sorted(keys) -> list[str]:
    """Keys in JavaScript string order (UTF-16 code units; the same as Python's for BMP text)."""
    keys = list(keys)
    if "".join(keys).isascii():
        return sorted(keys)
    return sorted(keys, key=_utf16)


def _weights_sorted(keys: list[str], scores: Mapping[str, float], gamma: float, floor: float):
    """(weights in key order, top key, top score) for keys already in JS order."""
    best = keys[0]
    best_score = scores[best]
    for k in keys:
        s = scores[k]
        if s > best_score:
            best, best_score = k, s
    n = len(keys)
    minimum = floor / n
    weights: dict[str, float] = {}
    cumulative = 0.0
    for k in keys:
        if k == best:
            weights[k] = 0.0  # placeholder keeps key order; set below
            continue
        w = 1 / (n + gamma * (best_score - scores[k]))
        if not w >= minimum:  # also catches NaN
            w = minimum
        cumulative += w
        weights[k] = w
    top_weight = 1 - cumulative
    weights[best] = top_weight if top_weight > 0.0 else 0.0
    return weights, best, best_score


def top_action(scores: Mapping[str, float]) -> tuple[str, float]:
    """The highest-scoring action and its score; ties go to the smaller key (JS string order)."""
    if not scores:
        raise ValueError("scores is empty: there is no top action")
    keys = _js_sorted(scores)
    best = keys[0]
    for k in keys:
        if scores[k] > scores[best]:
            best = k
    return best, scores[best]


def action_weights(
    scores: Mapping[str, float], gamma: float, action_probability_floor: float
) -> dict[str, float]:
    """Inverse-gap weights (probabilities summing to 1), key -> weight in key order.

    Non-top action ``a``: ``max(1 / (n + gamma * (top - score_a)), floor / n)`` with
    ``floor = action_probability_floor``; top action: ``max(1 - Σ non-top, 0)``.
    Empty ``scores`` gives ``{}``.
    """
    if not scores:
        return {}
    return _weights_sorted(_js_sorted(scores), scores, gamma, action_probability_floor)[0]


def _shuffle(hasher: Any, keys: list[str]) -> list[str]:
    """``keys`` (already in JS order) sorted by ``shard(prefix + "-" + key)`` where ``hasher =
    salted(prefix)``; the sort is stable, so equal shards keep key order."""
    return sorted(keys, key=lambda k: shard(f"-{k}", TOTAL_SHARDS, hasher))


def shuffled_actions(flag_key: str, subject_key: str, keys) -> list[str]:
    """Actions in the subject's deterministic order: by ``shard(f"{flag}-{subject}-{key}")``, ties by key."""
    return _shuffle(salted(f"{flag_key}-{subject_key}"), _js_sorted(keys))


def _select(hasher: Any, keys: list[str], weights: Mapping[str, float]) -> str:
    """The first action, in the shuffled order, whose running weight exceeds the subject's
    threshold ``shard(prefix, 10000) / 10000`` (``hasher = salted(prefix)``); if rounding
    selects none, the last one (never raise)."""
    shuffled = _shuffle(hasher, keys)
    threshold = shard("", TOTAL_SHARDS, hasher) / TOTAL_SHARDS
    cumulative = 0.0
    for k in shuffled:
        cumulative += weights[k]
        if cumulative > threshold:
            return k
    return shuffled[-1]


def select_action(flag_key: str, subject_key: str, weights: Mapping[str, float]) -> str:
    """The action this subject gets under ``weights`` (see the module docstring)."""
    if not weights:
        raise ValueError("weights is empty: there is no action to select")
    return _select(salted(f"{flag_key}-{subject_key}"), _js_sorted(weights), weights)


def evaluate_bandit(
    flag_key: str,
    subject_key: str,
    subject_attributes: Attributes | Mapping[str, Any] | None,
    actions: Mapping[str, Attributes | Mapping[str, Any] | None],
    model: BanditModel,
) -> BanditEvaluation:
    """Score, weigh and select one action for one subject.

    Args:
        subject_attributes, actions' values: a flat dict or :class:`Attributes`.
        actions: action key -> attributes; not empty. Its order never matters.

    Raises:
        ValueError: when ``actions`` is empty (the Client checks this and returns no action).
    """
    if not actions:
        raise ValueError("actions is empty: pass at least one action")
    subject = attributes_view(subject_attributes)
    scores = {k: _score(model, subject, k, attributes_view(a)) for k, a in actions.items()}
    keys = _js_sorted(scores)
    weights, _, top = _weights_sorted(keys, scores, model.gamma, model.action_probability_floor)
    chosen = _select(salted(f"{flag_key}-{subject_key}"), keys, weights)
    score = scores[chosen]
    return BanditEvaluation(flag_key, subject_key, chosen, score, weights[chosen], model.gamma, top - score,
                            subject_attributes, actions[chosen])
