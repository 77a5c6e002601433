"""Many subjects, one flag, one action set: bandit actions scored together with numpy.

Results are identical to :meth:`Client.get_bandit_action` subject by subject: every float is
produced by the same IEEE operations in the same order (element-wise adds in the scorer's
order, weights accumulated sequentially with ``cumsum`` in key order), and the shard hash is
the same md5.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from sortition.serving.attributes import Attributes, numeric_value
from sortition.serving.bandits import (
    BanditEvaluation,
    BanditModel,
    _categorical_sum,
    attributes_view,
    categorical_key,
    _js_sorted,
    _numeric_sum,
    evaluate_bandit,
)
from sortition.serving.results import BanditResult
from sortition.serving.events import now_rfc3339, offered_groups
from sortition.serving.md5_batch import shards, shards_product
from sortition.serving.sharding import BANDIT_ASSIGNMENT_SHARDS

logger = logging.getLogger("sortition.serving")

# Below this many subjects per bandit the scalar evaluator is as fast.
MIN_VECTOR = 16


def bandit_batch(client, cfg, flag_key: str, subjects: Any, actions: Any, default: str) -> list[BanditResult]:
    from sortition.serving.client import _STRING, _actions, _report_failure

    items = list(subjects.items() if isinstance(subjects, Mapping) else subjects)
    action_map = _actions(actions)
    stamp = now_rfc3339()  # the events of one call share its timestamp
    try:
        assigned = client._assign_many(cfg, flag_key, items, default, _STRING, stamp)
    except Exception:  # noqa: BLE001 - never raise from evaluation
        _report_failure("sortition: get_bandit_actions(%r) failed; serving the default", flag_key)
        return [BanditResult(default, None) for _ in items]
    n = len(items)
    values = [v for v, _ in assigned]
    chosen: list[Any] = [None] * n
    evaluations_of: list[Any] = [None] * n
    groups: dict[str, list[int]] = {}
    links: dict[Any, Any] = {}  # variation value -> link (few distinct values)
    unmodelled: set[str] = set()
    if action_map:
        for i, (value, variation_key) in enumerate(assigned):
            if variation_key is None:
                continue
            link = links.get(value, _MISSING)
            if link is _MISSING:
                link = links[value] = cfg.bandit_link(flag_key, value)
            if link is None:
                continue
            if link.bandit_key not in cfg.bandits:
                unmodelled.add(link.bandit_key)
                continue
            groups.setdefault(link.bandit_key, []).append(i)
    for bandit_key in sorted(unmodelled):
        logger.warning("sortition: no model for bandit %r (flag %r); serving no action", bandit_key, flag_key)
    versions = {link.bandit_key: link.model_version for link in links.values() if link is not None}
    action_groups: dict[str, tuple[dict, dict]] = {}  # action key -> cleaned attribute groups, built once
    offered = None  # every offered action's cleaned groups, built once per call when logged
    for bandit_key, idx in groups.items():
        model = cfg.bandits[bandit_key]
        keys = [items[i][0] for i in idx]
        attrs = [items[i][1] for i in idx]
        try:
            if len(idx) < MIN_VECTOR:
                evaluations = [evaluate_bandit(flag_key, k, a, action_map, model) for k, a in zip(keys, attrs)]
            else:
                evaluations = _evaluate_many(flag_key, keys, attrs, action_map, model)
            if offered is None and client._log_bandit is not None and client._log_offered:
                offered = offered_groups(action_map)
        except Exception:  # noqa: BLE001
            _report_failure("sortition: batch scoring failed for bandit %r; serving no action", bandit_key)
            continue
        version = model.model_version or versions.get(bandit_key)
        log = client._log_bandit is not None
        for i, e in zip(idx, evaluations):
            chosen[i] = e.action_key
            evaluations_of[i] = e
            if log:
                groups_of_action = action_groups.get(e.action_key)
                if groups_of_action is None:
                    a = Attributes.coerce(e.action_attributes)
                    groups_of_action = (a.numeric_clean(), a.categorical_clean())
                    action_groups[e.action_key] = groups_of_action
                client._emit_bandit(bandit_key, version, e, stamp, groups_of_action, offered=offered)
    return [BanditResult(v, a, None, e) for v, a, e in zip(values, chosen, evaluations_of)]


_MISSING = object()


def _evaluate_many(
    flag_key: str,
    subject_keys: list[str],
    subjects: list[Any],
    actions: dict[str, Any],
    model: BanditModel,
) -> list[BanditEvaluation]:
    keys = _js_sorted(actions)  # column order = JS key order (top-score ties, shuffle ties)
    n, k = len(subjects), len(keys)
    scores = _score_matrix(subjects, keys, actions, model)
    finite = np.isfinite(scores).all(axis=1)

    best = np.argmax(scores, axis=1)  # first maximum = smallest key among ties
    rows = np.arange(n)
    top = scores[rows, best]
    weights = 1 / (k + model.gamma * (top[:, None] - scores))
    weights = np.maximum(weights, model.action_probability_floor / k)
    weights[rows, best] = 0.0
    others = np.cumsum(weights, axis=1)[:, -1]  # sequential, in key order, as the scalar loop
    weights[rows, best] = np.maximum(1 - others, 0.0)

    prefixes = [f"{flag_key}-{s}" for s in subject_keys]
    action_shards = shards_product([p + "-" for p in prefixes], keys, BANDIT_ASSIGNMENT_SHARDS)  # (n, k)
    threshold = shards(prefixes, BANDIT_ASSIGNMENT_SHARDS) / BANDIT_ASSIGNMENT_SHARDS
    order = np.argsort(action_shards * k + np.arange(k), axis=1, kind="stable")
    running = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)
    hit = running > threshold[:, None]
    position = np.where(hit.any(axis=1), hit.argmax(axis=1), k - 1)
    chosen = order[rows, position]

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

    scores = np.empty((n, len(keys)))
    for j, action_key in enumerate(keys):
        c = model.coefficients.get(action_key)
        if c is None:
            scores[:, j] = model.default_action_score
            continue
        numeric = np.zeros(n)
        for attr, coefficient, missing in c.subject_numeric:
            x, valid = numeric_col(attr)
            numeric = numeric + np.where(valid, x * coefficient, missing)
        categorical = np.zeros(n)
        for attr, table, missing in c.subject_categorical:
            values, codes = categorical_col(attr)
            lut = np.array([missing if v is None else table.get(v, missing) for v in values], dtype=np.float64)
            categorical = categorical + lut[codes]
        action = attributes_view(actions[action_key])
        score = np.full(n, c.intercept) + numeric
        score = score + categorical
        score = score + _numeric_sum(c.action_numeric, action[0])
        score = score + _categorical_sum(c.action_categorical, action[1], action[2])
        scores[:, j] = score
    return scores
