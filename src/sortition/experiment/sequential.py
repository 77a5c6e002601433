"""SequentialExperiment: one ``advance()`` per round, committed only when the round succeeds.

A round: read the round's rows (each with the arm it got, the propensity it was assigned with,
its cell and its round), fit the posterior on all rows so far (warm-started from the previous
round's forests), discover segments, summarize them in one pass over the draws, allocate by
Thompson sampling per segment, recommend, drop treatments that lost everywhere for
``drop_after`` rounds, propose graduations, and build the next plan. The steps are the pure
functions of :mod:`sortition.experiment.steps` over frozen :class:`ExperimentSettings`, with the
statistics injected as a :class:`LoopPolicy`; the experiment's state changes in one assignment at
the very end, so a round that raises leaves the experiment exactly as it was (retry it with the
same or corrected data).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sortition.experiment import loop_policy, steps
from sortition.experiment.cells import Plan, make_plan, uniform_plan
from sortition.experiment.export import experiment_salt, plan_to_configuration
from sortition.experiment.loop_policy import LoopPolicy
from sortition.experiment.results import Graduation, RoundResult
from sortition.experiment.schedules import Schedule
from sortition.experiment.settings import ExperimentSettings
from sortition.experiment.state import ExperimentState
from sortition.policy import PolicyTree, expected_loss
from sortition.posterior import Posterior, summarize_lifts

__all__ = ["SequentialExperiment", "expected_loss", "load_experiment", "save_experiment", "sequential_experiment"]


def _setting(name: str) -> property:
    return property(lambda self: getattr(self.settings_, name), doc=f"``settings_.{name}``")


class SequentialExperiment:
    """A multi-round adaptive experiment over K arms (control first).

    Args:
        arms: arm names, control first.
        key: the experiment (flag) key; also fixes the shard salt for every round.
        outcome: "continuous", "binary" or "revenue".
        engine: posterior engine ("bcf" or "stratified"); ``fit_options`` go to ``fit``.
        schedule: visitors per round (a :class:`Schedule`, a list of sizes); informational
            for ``advance`` (which reads whatever rows it is given) and used by simulations.
        min_control_weight, min_explore_weight: floors of the control and explore cells.
        epsilon: Thompson floor-clip inside the optimized cell (see ``thompson_allocation``).
        max_depth, min_leaf_share: the policy tree's limits.
        drop_below, drop_after: a treatment whose probability of being best is below
            ``drop_below`` in every segment for ``drop_after`` consecutive rounds stops being
            served (its rows stay in the data).
        graduation_probability, graduation_loss, graduation_rounds: a segment's best arm is
            proposed for shipping when P(lift > 0) >= ``graduation_probability`` and the expected
            loss of shipping it is below ``graduation_loss`` x |control mean outcome|, for
            ``graduation_rounds`` consecutive rounds. Proposals are never shipped by the loop.
        level: credible level of reported intervals.
        covariates: covariate columns (default: every non-role column of the round data).
        seed: base seed; round r fits with a seed derived from (seed, r).
        warm_start: start each round's BCF fit from the previous round's forests (its last draw; no
            grow-from-root sweeps, a short burn-in); False refits every round cold.
        resegment_probability: once segments are established (see ``settle_rounds``), the new policy tree
            replaces last round's segments only when the posterior probability that its welfare (expected
            gain per visitor of serving each segment its best arm) is higher by more than the minimum gain is
            at least this; 0 always re-segments (``steps.choose_tree``). Established segments change one
            at a time (``steps.change_one_segment``: one segment's visitors regrouped by the new tree, when
            that passes the test or the whole tree does). ``RoundResult.resegment_probability`` reports it,
            ``RoundResult.churn`` the share of visitors whose segment or served arm changed (the arm the
            exported flag serves each visitor's shard; ``churn_top_arm``: the proxy that takes each
            segment's most-allocated arm).
        resegment_min_gain: that minimum gain per visitor, as a share of |control mean outcome| (the
            unit of ``graduation_loss``): a new tree only a little better on most draws is not worth
            moving visitors.
        arm_switch_probability: the incumbent-arm rule (``steps.hold_arm_flips``): a segment kept from
            last round whose Thompson weights would now lead with another arm keeps last round's weights
            unless the posterior probability that the new leader's mean beats the incumbent's is at
            least this (0: never hold). ``RoundResult.held_arms`` lists the segments held.
        max_churn: once the segments are established, a next plan that keeps them changes the served arm of
            at most this share of the visitors so far: when the new Thompson weights would move more, every
            segment's weights move only part of the way from last round's (``steps.limit_churn``;
            ``RoundResult.allocation_step`` says how far). On a round that changes one segment, a new
            group of visitors gets this round's weights (the posterior backed it), and the segments that are
            still last round's groups move at most as far as leaves the round under the cap, or not at all
            when the change alone moves more. A new tree taken whole is not capped. 1 never caps.
        settle_rounds: the trees of the first this many rounds are provisional: while segments settle, a
            new tree replaces them when P >= 0.5 (more likely better than not, ``steps.PROVISIONAL_PROBABILITY``),
            and their plans are not churn-capped; from round ``settle_rounds`` on, segments are established
            (``RoundResult.segments_established``). Early trees are fit on little data: a first tree the
            posterior still prefers stays, and a better one is taken before visitors are used to their arms.
        policy: the statistics the loop drives (:class:`LoopPolicy`; None: ``loop_policy.DEFAULT_POLICY``,
            Sortition's own).

    The settings are validated and frozen in ``settings_`` (:class:`ExperimentSettings`).
    """

    def __init__(
        self,
        arms: Sequence[str],
        *,
        key: str = "sortition-experiment",
        outcome: str = "continuous",
        engine: str = "bcf",
        fit_options: Mapping[str, Any] | None = None,
        schedule: Schedule | Sequence[int] | None = None,
        min_control_weight: float = 0.05,
        min_explore_weight: float = 0.05,
        epsilon: float = 0.02,
        max_depth: int = 2,
        min_leaf_share: float = 0.10,
        tree_options: Mapping[str, Any] | None = None,
        drop_below: float = 0.01,
        drop_after: int = 2,
        graduation_probability: float = 0.95,
        graduation_loss: float = 0.01,
        graduation_rounds: int = 2,
        level: float = 0.9,
        covariates: Sequence[str] | None = None,
        seed: int = 0,
        warm_start: bool = True,
        resegment_probability: float = 0.9,
        resegment_min_gain: float = 0.002,
        arm_switch_probability: float = 0.8,
        max_churn: float = 0.08,
        settle_rounds: int = 2,
        policy: LoopPolicy | None = None,
    ) -> None:
        arms = tuple(str(a) for a in arms)
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise ValueError(f"arms must be at least two distinct names, control first; got {list(arms)}")
        policy = loop_policy.DEFAULT_POLICY if policy is None else policy
        if not isinstance(policy, LoopPolicy):
            raise TypeError(f"policy must be a LoopPolicy, got {type(policy).__name__}")
        self.arms = arms
        self.settings_ = ExperimentSettings(
            key=key, outcome=outcome, engine=engine, fit_options=fit_options, schedule=schedule,
            min_control_weight=min_control_weight, min_explore_weight=min_explore_weight, epsilon=epsilon,
            max_depth=max_depth, min_leaf_share=min_leaf_share, tree_options=tree_options, drop_below=drop_below,
            drop_after=drop_after, graduation_probability=graduation_probability, graduation_loss=graduation_loss,
            graduation_rounds=graduation_rounds, level=level, covariates=covariates, seed=seed,
            warm_start=warm_start, resegment_probability=resegment_probability,
            resegment_min_gain=resegment_min_gain, arm_switch_probability=arm_switch_probability,
            max_churn=max_churn, settle_rounds=settle_rounds,
        )
        self.policy = policy
        first = uniform_plan(arms, self.weights, round=0)
        self._state = ExperimentState(round=0, data=None, plan=first, active_arms=arms, plans=(first,))

    # --- the settings (read-only; see ExperimentSettings) ------------------------------------------
    key = _setting("key")
    outcome = _setting("outcome")
    engine = _setting("engine")
    fit_options = _setting("fit_options")
    schedule = _setting("schedule")
    weights = _setting("weights")
    min_control_weight = _setting("min_control_weight")
    min_explore_weight = _setting("min_explore_weight")
    epsilon = _setting("epsilon")
    max_depth = _setting("max_depth")
    min_leaf_share = _setting("min_leaf_share")
    tree_options = _setting("tree_options")
    drop_below = _setting("drop_below")
    drop_after = _setting("drop_after")
    graduation_probability = _setting("graduation_probability")
    graduation_loss = _setting("graduation_loss")
    graduation_rounds = _setting("graduation_rounds")
    level = _setting("level")
    covariates = _setting("covariates")
    seed = _setting("seed")
    warm_start = _setting("warm_start")
    resegment_probability = _setting("resegment_probability")
    resegment_min_gain = _setting("resegment_min_gain")
    arm_switch_probability = _setting("arm_switch_probability")
    max_churn = _setting("max_churn")
    settle_rounds = _setting("settle_rounds")

    # --- read-only views of the committed state ---------------------------------------------
    @property
    def round_(self) -> int:
        """Rounds completed so far (the plan to serve is for this round)."""
        return self._state.round

    @property
    def plan_(self) -> Plan:
        """The plan to serve in the current round."""
        return self._state.plan

    @property
    def plans_(self) -> tuple[Plan, ...]:
        """Every plan served or to be served, round 0 first."""
        return self._state.plans

    @property
    def results_(self) -> tuple[RoundResult, ...]:
        return self._state.results

    @property
    def active_arms_(self) -> tuple[str, ...]:
        return self._state.active_arms

    @property
    def data_(self) -> pd.DataFrame | None:
        """All rows read so far (a copy)."""
        return None if self._state.data is None else self._state.data.copy()

    @property
    def posterior_(self) -> Posterior | None:
        return self._state.posterior

    @property
    def tree_(self) -> PolicyTree | None:
        return self._state.tree

    @property
    def graduations_(self) -> tuple[Graduation, ...]:
        return self._state.results[-1].graduations if self._state.results else ()

    def configuration(self, *, created_at: str | None = None) -> dict[str, Any]:
        """The current plan as a UFC configuration (for ``Configuration.from_json`` or Eppo SDKs)."""
        return plan_to_configuration(self.plan_, self.key, created_at=created_at)

    # --- persistence (see sortition.experiment.persistence) -----------------------------------
    def settings(self) -> dict[str, Any]:
        """The constructor keywords (all but ``arms`` and ``policy``) that rebuild this experiment, JSON-ready."""
        return self.settings_.to_json()

    def to_json(self) -> dict[str, Any]:
        """The settings and committed state as the state file's JSON-ready dict."""
        from sortition.experiment.persistence import state_to_json

        return state_to_json(self.arms, self.settings(), self._state)

    def save(self, path: str | Path) -> Path:
        """Write the settings and committed state to ``path`` as JSON, atomically.

        The fitted posterior and tree are not saved: the next ``advance`` refits them from the
        saved rows, so a reloaded experiment gives the same next plan as this one.
        """
        from sortition.experiment.persistence import write_state

        return write_state(self.to_json(), path)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SequentialExperiment:
        """Rebuild an experiment from :meth:`to_json`'s dict (``posterior_``/``tree_`` are None)."""
        from sortition.experiment.persistence import state_from_json

        arms, settings, state = state_from_json(doc)
        experiment = cls(arms, **settings)  # the default policy: a custom one is not saved
        experiment._state = state
        return experiment

    @classmethod
    def load(cls, path: str | Path) -> SequentialExperiment:
        """Read an experiment written by :meth:`save` (``posterior_``/``tree_`` are None until
        the next round). Raises ValueError for a missing file or an unknown format version."""
        from sortition.experiment.persistence import read_state

        return cls.from_json(read_state(path))

    # --- the round ------------------------------------------------------------------------------
    def advance(self, round_data: pd.DataFrame) -> RoundResult:
        """Read one round's rows, learn, and commit the next plan (all or nothing).

        Args:
            round_data: one row per subject exposed this round, with columns ``subject``, ``arm``,
                ``outcome``, ``propensity`` (the probability of the arm it got), optionally
                ``cell`` and ``round`` (default: the current round), and covariates.
        Returns:
            The round's :class:`RoundResult` (also appended to ``results_``).
        Raises:
            ValueError / TypeError: bad round data (nothing is committed).
        """
        state, settings, policy = self._state, self.settings_, self.policy
        new_rows = steps.validate_rows(round_data, self.arms, state)
        all_rows = new_rows if state.data is None else pd.concat([state.data, new_rows], ignore_index=True)
        data = steps.experiment_data(all_rows, self.arms, settings.covariates)
        seed = steps.round_seed(settings.seed, state.round)
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        posterior = policy.fit(data, **steps.fit_options(settings, state, seed))
        timings["fit"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        this_round = np.asarray(data.round) == state.round if data.round is not None else np.ones(data.n, bool)
        extra = steps.summary_masks(data, this_round)
        limits = {"max_depth": settings.max_depth, "min_leaf_share": settings.min_leaf_share}
        tree = policy.tree(posterior, seed=seed, extra_masks=extra, **limits, **settings.tree_options)
        score = partial(policy.keep, posterior, extra_masks=extra, **limits)  # rules on this posterior
        rules = steps.previous_rules(state.plan, data)
        scale = steps.control_scale(data)
        was_established = bool(state.results) and state.results[-1].segments_established
        tree, p_resegment, segment_change = steps.choose_segments(
            tree, None if rules is None else score(rules), score, settings, was_established, scale)
        established = state.round >= settings.settle_rounds
        segments, summary = tuple(tree.segments), tree.summary
        thompson = policy.allocate(posterior, segments, settings.epsilon, summary)
        allocation, held = steps.hold_arm_flips(state.plan, data, segments, summary, thompson, state.active_arms,
                                                settings.arm_switch_probability)
        population = policy.population(posterior, settings.epsilon, summary)
        timings["policy"] = time.perf_counter() - t0

        loser_streak, dropped = steps.drop_losers(state.active_arms, segments, state.loser_streak,
                                                  settings.drop_below, settings.drop_after)
        active = tuple(a for a in state.active_arms if a not in dropped)
        seg_results, winner_streak, graduations = steps.segment_results(
            settings, self.arms, segments, summary, allocation, state.winner_streak, scale,
            posterior.interval_level("segment", settings.level))
        # one decision per scope, after the graduations: SHIP in the loop is a graduation
        recommendations = policy.recommend(
            posterior, segments, summary, **steps.decision_options(settings, segments, graduations, scale))
        plan = make_plan(
            self.arms, [(seg.id, seg.rule) for seg in segments], allocation, weights=settings.weights,
            active_arms=active, default_allocation=population, round=state.round + 1,
            descriptions={s.id: s.description for s in seg_results},
        )
        # the cap holds on plans whose segments are established: the settling rounds' weights, and a new
        # tree taken whole, move freely
        capped = established and segment_change != "new tree"
        plan, step = steps.limit_churn(state.plan, plan, data, experiment_salt(self.key),
                                       settings.max_churn if capped else 1.0, seed=seed)
        result = RoundResult(
            round=state.round,
            n_round=int(len(new_rows)),
            n_total=int(data.n),
            lifts=summarize_lifts(self.arms, posterior.average_effects(),
                                  posterior.interval_level("average", settings.level)),
            ipw_arm_means=steps.ipw_arm_means(data),
            segments=tuple(replace(s, arm_probabilities=plan.segment(s.id).arm_probabilities) for s in seg_results),
            cells=steps.cell_observations(summary, data, this_round, settings.level),
            active_arms=active,
            dropped=dropped,
            graduations=tuple(graduations),
            plan=plan,
            recommendations=recommendations,
            tree=tree,
            seconds=timings,
            churn=None if not state.results else steps.churn(state.plan, plan, data, experiment_salt(self.key),
                                                             seed=seed),
            churn_top_arm=None if not state.results else steps.churn(state.plan, plan, data, seed=seed),
            held_arms=held,
            resegment_probability=p_resegment,
            segments_established=established,
            calibrated_allocation=bool(getattr(thompson, "calibrated", False)),
            allocation_step=step,
            segment_change=segment_change,
        )
        # commit: the only mutation of the experiment
        self._state = ExperimentState(
            round=state.round + 1, data=all_rows, plan=plan, active_arms=active,
            results=(*state.results, result), plans=(*state.plans, plan), loser_streak=loser_streak,
            winner_streak=winner_streak, posterior=posterior, tree=tree,
            warm_start=getattr(posterior, "warm_start", None),
        )
        return result


def sequential_experiment(arms: Sequence[str], **kwargs: Any) -> SequentialExperiment:
    """Make a :class:`SequentialExperiment` (keywords as its constructor)."""
    return SequentialExperiment(arms, **kwargs)


def save_experiment(experiment: SequentialExperiment, path: str | Path) -> Path:
    """``experiment.save(path)``: the state file, written atomically."""
    return experiment.save(path)


def load_experiment(path: str | Path) -> SequentialExperiment:
    """``SequentialExperiment.load(path)``."""
    return SequentialExperiment.load(path)
