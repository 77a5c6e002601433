"""Bandit models that learn between retrains: the ridge's sufficient statistics updated in place.

The per-action ridge of :mod:`sortition.learning.training` is a function of X'WX and X'Wy alone
(:class:`~sortition.learning.sufficient.ActionStatistics`). :class:`IncrementalBandit` keeps them
and, every ``update_every`` events, adds the new events' rank-k update

    X'WX += X_k' W_k X_k,    X'Wy += X_k' W_k y_k        (k = the events of one action)

and re-solves only the actions those events touched (O(k p^2 + p^3) each, independent of history).
Each update publishes a new :class:`~sortition.learning.model.BanditModel` with its own
``model_version`` (``"{base}+{u}"`` for the u-th update), so served events name the exact model
that chose them. Updates are deterministic: the same events in the same order give the same
models, bit for bit, whatever the batch sizes passed to :meth:`IncrementalBandit.learn`.

The feature layout (keys, standardization, category values) is fixed between retrains: a value
first seen after it scores its attribute's missing coefficient until the next full retrain (which
re-learns the layout, e.g. ``sortition.learning.sufficient.store_statistics``).

**Cold start.** A cold model is not uniform for a whole round: it updates after the first
``update_every`` events. And it explores where it knows little: with ``ColdStart(bonus)``, each
action's intercept is raised by ``bonus / sqrt(1 + n_a)`` (``n_a``: that action's events) and an
action never seen scores ``default + bonus``. Inverse-gap weighting then gives the actions with
little evidence more probability, and the bonus fades as each action's own evidence grows. It is
expressed in the model itself, so serving's one scorer (``score_actions`` / ``action_weights``)
serves it unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sortition.learning.events import BanditEvents
from sortition.learning.features import FeatureLayout, NumericColumn, fit_layout
from sortition.learning.model import BanditModel
from sortition.learning.sufficient import ActionStatistics, StoreStatistics
from sortition.learning.training import SqrtGamma, assemble_model, check_training, importance_weights
from sortition.serving.bandits import ActionCoefficients


@dataclass(frozen=True)
class ColdStart:
    """Optimism where an action has little evidence: intercept + bonus / sqrt(1 + n_a).

    ``bonus`` is in reward units (0 turns it off). An action without events scores the default
    score + bonus. Reference: the optimism-in-the-face-of-uncertainty principle (UCB, Auer et al.
    2002) applied to each action's intercept, whose standard error shrinks as 1 / sqrt(n_a).
    """

    bonus: float = 0.0

    def __post_init__(self) -> None:
        if not (self.bonus >= 0 and math.isfinite(self.bonus)):
            raise ValueError(f"ColdStart.bonus is {self.bonus!r}; it must be a finite number >= 0")

    def intercept_bonus(self, n_events: int) -> float:
        return self.bonus / math.sqrt(1.0 + n_events)


def numeric_layout(keys: Iterable[str], group: str = "subject") -> FeatureLayout:
    """A layout of numeric attributes taken as they are (mean 0, scale 1), for a cold start where
    no events exist to standardize by."""
    return FeatureLayout(tuple(NumericColumn(group, k, 0.0, 1.0) for k in keys), ())


def _encode(layout: FeatureLayout, ev: BanditEvents) -> np.ndarray:
    numeric = {"subject": ev.subject_numeric, "action": ev.action_numeric}
    categorical = {"subject": ev.subject_categorical, "action": ev.action_categorical}
    return layout.encode(numeric, categorical)


def _concat(chunks: list[BanditEvents]) -> BanditEvents:
    """The events of ``chunks``, in order (one update sums them as one block: the result never
    depends on how the caller split the stream)."""
    if len(chunks) == 1:
        return chunks[0]
    join = lambda name: tuple(x for c in chunks for x in getattr(c, name))  # noqa: E731
    subjects = None if any(c.subject is None for c in chunks) else np.concatenate([c.subject for c in chunks])
    offered = (
        None
        if all(c.offered is None for c in chunks)
        else tuple(x for c in chunks for x in (c.offered if c.offered is not None else (None,) * c.n))
    )
    return BanditEvents(
        action=np.concatenate([c.action for c in chunks]),
        reward=np.concatenate([c.reward for c in chunks]),
        action_probability=np.concatenate([c.action_probability for c in chunks]),
        subject_numeric=join("subject_numeric"),
        subject_categorical=join("subject_categorical"),
        action_numeric=join("action_numeric"),
        action_categorical=join("action_categorical"),
        subject=subjects,
        offered=offered,
    )


def event_statistics(
    layout: FeatureLayout,
    events: Any,
    *,
    importance_weighting: Literal["ips", "none"] = "ips",
    max_importance_weight: float = 20.0,
) -> ActionStatistics:
    """One action's sufficient statistics of ``events`` (all of that action) in a given layout."""
    ev = BanditEvents.coerce(events)
    X = _encode(layout, ev)
    w = importance_weights(ev.action_probability, importance_weighting, max_importance_weight)
    Xw = X * w[:, None]
    return ActionStatistics(layout, X.T @ Xw, Xw.T @ ev.reward, ev.n, float(w.sum()))


class IncrementalBandit:
    """Per-action ridge statistics, updated in place every ``update_every`` events.

    Build it from a full training's statistics (:meth:`from_statistics`, e.g. the store's) or cold
    (:meth:`cold`, from a layout). Feed events with :meth:`learn`; read the served model from
    ``model_``. Parameters are ``train_bandit``'s (gamma, action_probability_floor, l2,
    importance_weighting, max_importance_weight), plus:

    Args:
        layouts: action -> its feature layout (fixed until the next full retrain).
        statistics: action -> its statistics so far (missing actions start empty).
        default_layout: layout of an action first seen later (None: learned from that action's
            events in its first update, by ``fit_layout``).
        update_every: events per update (N); 1 updates after every event.
        cold_start: :class:`ColdStart` exploration bonus (default off).
        base_version: the published versions are ``"{base_version}+{u}"``.
        prior_weight_sum, prior_reward_sum: Σw and Σwy of the events behind ``statistics`` (for the
            default score, Σwy / Σw over every event learned).

    Learned state: ``statistics_`` (action -> ActionStatistics), ``model_`` (the latest model),
    ``updates_`` (number of updates so far), ``n_events_``.
    """

    def __init__(
        self,
        layouts: Mapping[str, FeatureLayout],
        *,
        statistics: Mapping[str, ActionStatistics] | None = None,
        default_layout: FeatureLayout | None = None,
        update_every: int = 100,
        bandit_key: str = "bandit",
        gamma: float | SqrtGamma = SqrtGamma(1.0),
        action_probability_floor: float = 0.0,
        l2: float = 1.0,
        importance_weighting: Literal["ips", "none"] = "ips",
        max_importance_weight: float = 20.0,
        cold_start: ColdStart = ColdStart(),
        base_version: str = "0",
        prior_weight_sum: float = 0.0,
        prior_reward_sum: float = 0.0,
        model_name: str = "sortition-ridge",
    ):
        check_training(action_probability_floor, l2, max_importance_weight)
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every is {update_every!r}; it must be a whole number of events >= 1")
        if importance_weighting not in ("ips", "none"):
            raise ValueError(f"importance_weighting is {importance_weighting!r}; use 'ips' or 'none'")
        if not isinstance(cold_start, ColdStart):
            raise TypeError(f"cold_start is {type(cold_start).__name__}; pass ColdStart(bonus)")
        self.layouts = dict(layouts)
        self.default_layout = default_layout
        self.update_every = update_every
        self.bandit_key = bandit_key
        self.gamma = gamma
        self.action_probability_floor = action_probability_floor
        self.l2 = l2
        self.importance_weighting = importance_weighting
        self.max_importance_weight = max_importance_weight
        self.cold_start = cold_start
        self.base_version = base_version
        self.model_name = model_name
        self.statistics_: dict[str, ActionStatistics] = dict(statistics or {})
        for action, s in self.statistics_.items():
            self.layouts.setdefault(action, s.layout)
        self.n_events_ = sum(s.n for s in self.statistics_.values())
        self._weight_sum = float(prior_weight_sum)
        self._reward_sum = float(prior_reward_sum)
        # each action's served coefficients (cold-start bonus included); an update re-solves and
        # re-publishes only the actions it touched
        self._served: dict[str, ActionCoefficients] = {
            a: self._serve(a) for a, s in sorted(self.statistics_.items()) if s.n > 0
        }
        self._pending: list[BanditEvents] = []
        self._pending_n = 0
        self.updates_ = 0
        self.model_ = self._publish()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_statistics(cls, stats: StoreStatistics, **kwargs: Any) -> IncrementalBandit:
        """Continue from a full training's statistics (``store_statistics(store, metric)``)."""
        return cls(
            {a: s.layout for a, s in stats.actions.items()},
            statistics=stats.actions,
            prior_weight_sum=stats.weight_sum,
            prior_reward_sum=stats.weighted_reward_sum,
            **kwargs,
        )

    @classmethod
    def cold(
        cls, layout: FeatureLayout | None = None, actions: Iterable[str] = (), **kwargs: Any
    ) -> IncrementalBandit:
        """Start with no events. Every action uses ``layout`` (None: each action's layout is learned
        from its events in its first update)."""
        return cls(
            {a: layout for a in actions} if layout is not None else {}, default_layout=layout, **kwargs
        )

    # ---- learning ----------------------------------------------------------------------------
    def learn(self, events: Any) -> list[BanditModel]:
        """Add events (in order); returns the models published by the updates they completed
        (one per ``update_every`` events; an empty list while fewer are pending)."""
        ev = BanditEvents.coerce(events)
        published = []
        start = 0
        while start < ev.n:
            take = min(self.update_every - self._pending_n, ev.n - start)
            self._pending.append(ev if take == ev.n else ev.take(np.arange(start, start + take)))
            self._pending_n += take
            start += take
            if self._pending_n >= self.update_every:
                published.append(self._update())
        return published

    def flush(self) -> BanditModel | None:
        """Update now with the pending events (fewer than ``update_every``); None when none."""
        return self._update() if self._pending_n else None

    def _layout_for(self, action: str, first: BanditEvents) -> FeatureLayout:
        """The action's layout; an action without one takes ``default_layout``, else the layout
        learned from ``first`` (its events in this update: ``fit_layout``, as a full training would)."""
        layout = self.layouts.get(action)
        if layout is None:
            layout = self.default_layout
            if layout is None:
                numeric = {"subject": first.subject_numeric, "action": first.action_numeric}
                categorical = {"subject": first.subject_categorical, "action": first.action_categorical}
                layout = fit_layout(numeric, categorical)
            self.layouts[action] = layout
        return layout

    def _update(self) -> BanditModel:
        chunk = _concat(self._pending)
        weights = importance_weights(
            chunk.action_probability, self.importance_weighting, self.max_importance_weight
        )
        self._weight_sum += float(weights.sum())
        self._reward_sum += float(weights @ chunk.reward)
        touched = chunk.actions
        for action in touched:
            rows = np.flatnonzero(chunk.action == action)
            sub = chunk if rows.size == chunk.n else chunk.take(rows)
            layout = self._layout_for(action, sub)
            X = _encode(layout, sub)
            Xw = X * weights[rows][:, None]
            old = self.statistics_.get(action)
            if old is None:
                p = layout.n_columns
                old = ActionStatistics(layout, np.zeros((p, p)), np.zeros(p), 0, 0.0)
            self.statistics_[action] = ActionStatistics(  # the rank-k update
                layout,
                old.xtwx + X.T @ Xw,
                old.xtwy + Xw.T @ sub.reward,
                old.n + rows.size,
                old.weight_sum + float(weights[rows].sum()),
            )
        self.n_events_ += chunk.n
        for action in touched:
            self._served[action] = self._serve(action)
        self._pending, self._pending_n = [], 0
        self.updates_ += 1
        self.model_ = self._publish()
        return self.model_

    def _serve(self, action: str) -> ActionCoefficients:
        """The action's ridge coefficients, its intercept raised by the cold-start bonus."""
        s = self.statistics_[action]
        c = s.coefficients(action, self.l2)
        bonus = self.cold_start.intercept_bonus(s.n)
        return dataclasses.replace(c, intercept=c.intercept + bonus) if bonus else c

    def _publish(self) -> BanditModel:
        default = self._reward_sum / self._weight_sum if self._weight_sum > 0 else 0.0
        return assemble_model(
            dict(sorted(self._served.items())),
            n_events=self.n_events_,
            default_action_score=default + self.cold_start.bonus,
            bandit_key=self.bandit_key,
            gamma=self.gamma,
            action_probability_floor=self.action_probability_floor,
            model_version=f"{self.base_version}+{self.updates_}",
            model_name=self.model_name,
        )
