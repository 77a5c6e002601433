"""Many subjects, one flag, one action set: bandit actions scored together with numpy.

:func:`evaluate_many` is :func:`~sortition.serving.bandits.evaluate_bandit` for many subjects
(the Client's batch call uses it; it imports nothing from the Client). Results are identical
to :meth:`Client.get_bandit_action` subject by subject: every float is produced by the same IEEE
operations in the same order (element-wise adds in the scorer's order, weights accumulated
sequentially with ``cumsum`` in key order), and the shard hash is the same md5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sortition.serving.attributes import numeric_value
from sortition.serving.bandits import (
    BanditEvaluation,
    BanditModel,
    _categorical_sum,
    _js_sorted,
    _numeric_sum,
    attributes_view,
    categorical_key,
    evaluate_bandit,
)
from sortition.serving.md5_batch import shards, shards_product
from sortition.serving.sharding import TOTAL_SHARDS


def evaluate_many(
    flag_key: str,
    subject_keys: list[str],
    subjects: list[Any],
    actions: dict[str, Any],
    model: BanditModel,
) -> list[BanditEvaluation]:
    """One :class:`BanditEvaluation` per subject (``subject_keys[i]``, ``subjects[i]``), identical
    to ``evaluate_bandit`` subject by subject: scores as an ``(n, k)`` matrix, weights and the
    shuffle in numpy, ``k = len(actions)``."""
    keys = _js_sorted(actions)  # column order = JS key order (top-score ties, shuffle ties)
    n = len(subjects)
    scores = _score_matrix(subjects, keys, actions, model)
    finite = np.isfinite(scores).all(axis=1)

    prefixes = [f"{flag_key}-{s}" for s in subject_keys]
    threshold = shards(prefixes, TOTAL_SHARDS) / TOTAL_SHARDS
    action_shards = shards_product([p + "-" for p in prefixes], keys, TOTAL_SHARDS)  # (n, k)
    chosen, weights, top = choose_actions(scores, model, threshold, action_shards)

    out = []
    scores_l, weights_l, top_l, chosen_l = scores.tolist(), weights.tolist(), top.tolist(), chosen.tolist()
    for i in range(n):
        if not finite[i]:  # non-finite scores: let the scalar evaluator decide, exactly
            out.append(evaluate_bandit(flag_key, subject_keys[i], subjects[i], actions, model))
            continue
        j = chosen_l[i]
        key = keys[j]
        out.append(BanditEvaluation(flag_key, subject_keys[i], key, scores_l[i][j], weights_l[i][j], model.gamma,
                                    top_l[i] - scores_l[i][j], subjects[i], actions[key]))
    return out


def choose_actions(scores: np.ndarray, model: BanditModel, threshold: np.ndarray,
                   action_shards: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every subject's action from its scores: the one vectorised copy of the single evaluator's
    weights and shuffle (:func:`~sortition.serving.bandits.action_weights`, ``shuffled_actions``).

    Args:
        scores: ``(n, k)`` action scores, columns in JS key order.
        model: the gamma and actionProbabilityFloor that turn scores into weights.
        threshold: ``(n,)`` in [0, 1): the subject's shard over the total shards.
        action_shards: ``(n, k)`` ints: the shard of each action's key for the subject.

    Returns:
        ``chosen`` ``(n,)`` column index, ``weights`` ``(n, k)`` probabilities, ``top`` ``(n,)`` best
        score. Rows with a non-finite score are meaningless here: the caller asks the single evaluator.
    """
    n, k = scores.shape
    every = np.arange(n)
    best = np.argmax(scores, axis=1)  # the first maximum: the smallest key among ties
    top = scores[every, best]
    with np.errstate(all="ignore"):  # non-finite rows are the caller's
        weights = 1 / (k + model.gamma * (top[:, None] - scores))
        weights = np.maximum(weights, model.action_probability_floor / k)
    weights[every, best] = 0.0
    others = np.cumsum(weights, axis=1)[:, -1]  # sequential, in key order, as the single evaluator
    weights[every, best] = np.maximum(1 - others, 0.0)
    order = np.argsort(action_shards * k + np.arange(k), axis=1, kind="stable")  # by shard, ties by key
    running = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)
    hit = running > threshold[:, None]
    chosen = order[every, np.where(hit.any(axis=1), hit.argmax(axis=1), k - 1)]
    return chosen, weights, top


def _score_matrix(subjects: list[Any], keys: list[str], actions: dict[str, Any],
                  model: BanditModel) -> np.ndarray:
    n = len(subjects)
    views = [attributes_view(s) for s in subjects]
    numeric_cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    categorical_cols: dict[str, tuple[list, np.ndarray]] = {}

    def numeric_col(key: str):
        if key not in numeric_cols:
            vals = [numeric_value(v[0].get(key)) for v in views]
            valid = np.fromiter((v is not None for v in vals), dtype=bool, count=n)
            x = np.fromiter((0.0 if v is None else v for v in vals), dtype=np.float64, count=n)
            numeric_cols[key] = (x, valid)
        return numeric_cols[key]

    def categorical_col(key: str):
        if key not in categorical_cols:
            uniq: dict[Any, int] = {}
            codes = np.fromiter(
                (uniq.setdefault(categorical_key(v[1].get(key), v[2]), len(uniq)) for v in views),
                dtype=np.intp, count=n,
            )
            categorical_cols[key] = (list(uniq), codes)
        return categorical_cols[key]

    def coefficients(attr: str, table: dict, missing: float) -> np.ndarray:
        values, codes = categorical_col(attr)
        return np.array([missing if v is None else table.get(v, missing) for v in values],
                        dtype=np.float64)[codes]

    return score_matrix(n, keys, actions, model, numeric_col, coefficients)


def score_matrix(n: int, keys: list[str], actions: dict[str, Any], model: BanditModel,
                 numeric: Callable[[str], tuple[np.ndarray, np.ndarray]],
                 coefficients: Callable[[str, Any, float], np.ndarray]) -> np.ndarray:
    """Bandit scores ``(n, k)`` for ``n`` subjects and the actions ``keys``, accumulated term by
    term in the single scorer's order: per action, intercept + subject numeric + subject
    categorical + action numeric + action categorical, each group summed from 0 in the model's
    order (so every float equals :func:`~sortition.serving.bandits.score_action`'s). The one
    accumulation of the batch and the columnar calls, which differ only in how they read subjects:

    Args:
        numeric: attribute -> (values float64 ``(n,)``, valid bool ``(n,)``).
        coefficients: (attribute, the model's level -> coefficient table, missing coefficient) ->
            each subject's coefficient, float64 ``(n,)``.
    """
    scores = np.empty((n, len(keys)))
    for j, action_key in enumerate(keys):
        c = model.coefficients.get(action_key)
        if c is None:
            scores[:, j] = model.default_action_score
            continue
        total_numeric = np.zeros(n)
        for attr, coefficient, missing in c.subject_numeric:
            x, valid = numeric(attr)
            total_numeric = total_numeric + np.where(valid, x * coefficient, missing)
        total_categorical = np.zeros(n)
        for attr, table, missing in c.subject_categorical:
            total_categorical = total_categorical + coefficients(attr, table, missing)
        action = attributes_view(actions[action_key])
        score = np.full(n, c.intercept) + total_numeric
        score = score + total_categorical
        score = score + _numeric_sum(c.action_numeric, action[0])
        score = score + _categorical_sum(c.action_categorical, action[1], action[2])
        scores[:, j] = score
    return scores
