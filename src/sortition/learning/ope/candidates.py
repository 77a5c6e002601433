"""Off-policy data for a candidate bandit model, from logged events with their offered actions.

The candidate's probability of each logged action comes from the serving evaluator itself
(``score_actions`` then ``action_weights``), so the evaluation judges exactly what would be
served. The reward model for DM/DR is trained by ``train_bandit`` with cross-fitting: each
fold's predictions come from a model trained on the other folds, so DR's correction is not
fooled by the reward model having seen the very rewards it corrects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sortition.learning.events import BanditEvents
from sortition.learning.model import BanditModel
from sortition.learning.ope.data import OffPolicyData
from sortition.learning.training import train_bandit
from sortition.serving.attributes import Attributes
from sortition.serving.bandits import action_weights, score_actions


_HOW = (
    "a candidate model's probabilities depend on every action offered in each context; log them "
    "(Sortition's Client does: the sortitionOfferedActions field of its bandit events, the store's "
    "offered_actions column) or pass offered = {action: attributes} per event"
)


def _offered(events: BanditEvents) -> tuple[dict[str, dict[str, dict[str, Any]]], ...]:
    if events.offered is None:
        raise ValueError(f"events have no 'offered' action sets: {_HOW}")
    missing = [i for i, o in enumerate(events.offered) if o is None]
    if missing:
        raise ValueError(
            f"{len(missing)} of {events.n} events have no 'offered' action set (rows {missing[:5]}); "
            f"{_HOW}. Evaluate on the events that have them"
        )
    return events.offered


def _attrs(a: Any) -> Attributes:
    if isinstance(a, Attributes):
        return a
    return Attributes(
        dict(a.get("numericAttributes", {}) or {}), dict(a.get("categoricalAttributes", {}) or {})
    )


def model_probabilities(model: BanditModel, events: BanditEvents) -> list[dict[str, float]]:
    """Per event, the model's probability of every offered action (serving's IGW)."""
    m = model.serving_model()
    out = []
    for i, offered in enumerate(_offered(events)):
        subject = Attributes(events.subject_numeric[i], events.subject_categorical[i])
        scores = score_actions(m, subject, {k: _attrs(a) for k, a in offered.items()})
        out.append(action_weights(scores, m.gamma, m.action_probability_floor))
    return out


def model_scores(
    model: BanditModel, events: BanditEvents, rows: np.ndarray | None = None
) -> list[dict[str, float]]:
    """Per event (or per row in ``rows``), the model's score of every offered action."""
    m = model.serving_model()
    offered = _offered(events)
    idx = range(events.n) if rows is None else rows.tolist()
    return [
        score_actions(
            m,
            Attributes(events.subject_numeric[i], events.subject_categorical[i]),
            {k: _attrs(a) for k, a in offered[i].items()},
        )
        for i in idx
    ]


def crossfit_scores(
    events: BanditEvents, folds: int = 2, seed: int = 0, **train_kwargs: Any
) -> list[dict[str, float]]:
    """Per event, reward predictions for every offered action from a model trained on the other folds."""
    if folds < 2:
        raise ValueError(f"folds is {folds}; cross-fitting needs at least 2")
    fold = np.random.default_rng(seed).integers(0, folds, events.n)
    out: list[dict[str, float]] = [{} for _ in range(events.n)]
    for f in range(folds):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        if test.size == 0 or train.size == 0:
            continue
        model = train_bandit(events.take(train), gamma=0.0, **train_kwargs)
        for i, s in zip(test.tolist(), model_scores(model, events, test), strict=True):
            out[i] = s
    return out


def candidate_data(
    events: Any,
    candidate: BanditModel,
    reward_model: BanditModel | str | None = "crossfit",
    logging_model: BanditModel | None = None,
    min_logging_probability: float = 1e-3,
    seed: int = 0,
) -> OffPolicyData:
    """OffPolicyData for evaluating ``candidate`` on logged events.

    Args:
        events: logged events with ``offered`` action sets (BanditEvents, DataFrame or dicts).
        candidate: the model whose policy (scores + inverse-gap weighting) is evaluated.
        reward_model: "crossfit" (train_bandit on the logs, 2-fold cross-fitted), a BanditModel
            whose scores are taken as expected rewards, or None (IPS/SNIPS only).
        logging_model: the model that logged the events, when known: then ``unsupported_mass``
            says how much candidate probability falls on actions the logger gave less than
            ``min_logging_probability``.
    """
    ev = BanditEvents.coerce(events)
    probs = model_probabilities(candidate, ev)
    logged = ev.action.tolist()
    missing = [i for i, (p, a) in enumerate(zip(probs, logged, strict=True)) if a not in p]
    if missing:
        raise ValueError(f"the logged action is not among the offered actions in rows {missing[:5]}")
    target = np.array([p[a] for p, a in zip(probs, logged, strict=True)])
    q_logged = q_target = None
    if reward_model is not None:
        if isinstance(reward_model, str):
            if reward_model != "crossfit":
                raise ValueError(f"reward_model is {reward_model!r}; use 'crossfit', a BanditModel or None")
            q = crossfit_scores(ev, seed=seed)
        else:
            q = model_scores(reward_model, ev)
        q_logged = np.array([qi[a] for qi, a in zip(q, logged, strict=True)])
        q_target = np.array([sum(p[k] * qi[k] for k in p) for p, qi in zip(probs, q, strict=True)])
    unsupported = None
    if logging_model is not None:
        mu = model_probabilities(logging_model, ev)
        unsupported = np.array(
            [
                sum(p[k] for k in p if m.get(k, 0.0) < min_logging_probability)
                for p, m in zip(probs, mu, strict=True)
            ]
        )
    return OffPolicyData(
        reward=ev.reward,
        logging_probability=ev.action_probability,
        target_probability=target,
        expected_reward_logged=q_logged,
        expected_reward_target=q_target,
        unsupported_mass=unsupported,
    )
