"""SequentialExperiment: one ``advance()`` per round, committed only when the round succeeds.

A round: read the round's rows (each with the arm it got, the propensity it was assigned with,
its cell and its round), fit the posterior on all rows so far, discover segments, allocate by
Thompson sampling per segment, recommend, drop treatments that lost everywhere for
``drop_after`` rounds, propose graduations, and build the next plan. Everything is computed on
the side; the experiment's state changes in one assignment at the very end, so a round that
raises leaves the experiment exactly as it was (retry it with the same or corrected data).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sortition.experiment.cells import CELLS, CellWeights, Plan, make_plan, uniform_plan
from sortition.experiment.export import plan_to_configuration
from sortition.experiment.results import CellObservation, Graduation, Lift, RoundResult, SegmentResult
from sortition.experiment.schedules import Schedule, as_schedule
from sortition.experiment.state import ExperimentState
from sortition.policy import expected_loss
from sortition.posterior import summarize_lifts

# Column roles in round data; every other column is a covariate unless ``covariates`` is given.
ROLE_COLUMNS = ("subject", "arm", "outcome", "propensity", "cell", "round", "segment")
_IGNORED = frozenset({*ROLE_COLUMNS, "allocation", "experiment", "timestamp", "event_id", "flag"})


# Indirections to the packages the loop drives (kept here so a test can make one step fail).
def _fit_posterior(data: Any, **kwargs: Any) -> Any:
    from sortition.posterior import fit

    return fit(data, **kwargs)


def _fit_tree(posterior: Any, **kwargs: Any) -> Any:
    from sortition.policy import fit_policy_tree

    return fit_policy_tree(posterior, **kwargs)


def _allocate(posterior: Any, segments: Sequence[Any], epsilon: float) -> dict[Any, dict[str, float]]:
    from sortition.policy import thompson_allocation

    return thompson_allocation(posterior, segments, epsilon=epsilon)


def _population_allocation(posterior: Any, epsilon: float) -> dict[str, float]:
    from sortition.policy import arm_win_frequencies, iterative_floor_clip

    raw = arm_win_frequencies(posterior.mean_contrasts(), len(posterior.arms))
    weights = iterative_floor_clip(raw, epsilon)
    return {a: float(w) for a, w in zip(posterior.arms, weights, strict=True)}


def _recommend(posterior: Any, segments: Sequence[Any]) -> Any:
    from sortition.policy import recommend

    return recommend(posterior, segments)


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
    ) -> None:
        arms = tuple(str(a) for a in arms)
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise ValueError(f"arms must be at least two distinct names, control first; got {list(arms)}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if not 0.0 <= drop_below <= 1.0:
            raise ValueError(f"drop_below must be in [0, 1], got {drop_below}")
        for name, value in (("drop_after", drop_after), ("graduation_rounds", graduation_rounds)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.arms = arms
        self.key = key
        self.outcome = outcome
        self.engine = engine
        self.fit_options = dict(fit_options or {})
        self.schedule = None if schedule is None else as_schedule(schedule)
        self.weights = CellWeights(min_control_weight, min_explore_weight)
        self.min_control_weight = min_control_weight
        self.min_explore_weight = min_explore_weight
        self.epsilon = epsilon
        self.max_depth = max_depth
        self.min_leaf_share = min_leaf_share
        self.tree_options = dict(tree_options or {})
        self.drop_below = drop_below
        self.drop_after = drop_after
        self.graduation_probability = graduation_probability
        self.graduation_loss = graduation_loss
        self.graduation_rounds = graduation_rounds
        self.level = level
        self.covariates = None if covariates is None else list(covariates)
        self.seed = seed
        first = uniform_plan(arms, self.weights, round=0)
        self._state = ExperimentState(round=0, data=None, plan=first, active_arms=arms, plans=(first,))

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
    def posterior_(self) -> Any:
        return self._state.posterior

    @property
    def tree_(self) -> Any:
        return self._state.tree

    @property
    def graduations_(self) -> tuple[Graduation, ...]:
        return self._state.results[-1].graduations if self._state.results else ()

    def configuration(self, *, created_at: str | None = None) -> dict[str, Any]:
        """The current plan as a UFC configuration (for ``Configuration.from_json`` or Eppo SDKs)."""
        return plan_to_configuration(self.plan_, self.key, created_at=created_at)

    # --- persistence (see sortition.experiment.persistence) -----------------------------------
    def settings(self) -> dict[str, Any]:
        """The constructor keywords (all but ``arms``) that rebuild this experiment, JSON-ready."""
        from sortition.experiment.persistence import SETTINGS

        out = {name: getattr(self, name) for name in SETTINGS}
        out["schedule"] = None if self.schedule is None else list(self.schedule.sizes)
        return out

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
        experiment = cls(arms, **settings)
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
        state = self._state
        timings: dict[str, float] = {}
        new_rows = self._validate(round_data, state)
        all_rows = new_rows if state.data is None else pd.concat([state.data, new_rows], ignore_index=True)
        data = self._experiment_data(all_rows)

        t0 = time.perf_counter()
        # per-round seed from (seed, round); below 2**31 because C++ engines take a signed int
        seed = int(np.random.SeedSequence([self.seed, state.round]).generate_state(1)[0]) % (2**31 - 1)
        posterior = _fit_posterior(data, outcome=self.outcome, engine=self.engine, seed=seed, **self.fit_options)
        timings["fit"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tree = _fit_tree(
            posterior, max_depth=self.max_depth, min_leaf_share=self.min_leaf_share, seed=seed, **self.tree_options
        )
        segments = tuple(tree.segments)
        allocation = _allocate(posterior, segments, self.epsilon)
        population = _population_allocation(posterior, self.epsilon)
        try:
            recommendations = _recommend(posterior, segments)
        except (ImportError, AttributeError, NotImplementedError):
            recommendations = None
        timings["policy"] = time.perf_counter() - t0

        masks = [self._mask(seg.rule, data) for seg in segments]
        seg_draws = [posterior.segment_mean_contrasts(m) for m in masks]
        control_rows = data.arm_index == 0
        scale = abs(float(data.outcome[control_rows].mean())) if control_rows.any() else 0.0
        scale = scale if scale > 0 else 1.0

        # drop treatments that lost in every segment for drop_after consecutive rounds
        loser_streak = dict(state.loser_streak)
        dropped: list[str] = []
        for arm in state.active_arms[1:]:
            lost = all(float(seg.arm_best_probabilities.get(arm, 0.0)) < self.drop_below for seg in segments)
            loser_streak[arm] = loser_streak.get(arm, 0) + 1 if lost else 0
            if loser_streak[arm] >= self.drop_after:
                dropped.append(arm)
        active = tuple(a for a in state.active_arms if a not in dropped)

        # graduation proposals: the segment's best arm, confidently positive and cheap to ship
        winner_streak: dict[tuple[str, str], int] = {}
        graduations: list[Graduation] = []
        seg_results: list[SegmentResult] = []
        for seg, draws in zip(segments, seg_draws, strict=True):
            description = _describe(seg.rule)
            lifts = _lifts(self.arms, draws, self.level)
            loss = expected_loss(draws, self.arms)
            best = str(seg.best_arm)
            if best != self.arms[0]:
                j = self.arms.index(best) - 1
                p_pos = float((draws[:, j] > 0).mean())
                if p_pos >= self.graduation_probability and loss[best] <= self.graduation_loss * scale:
                    streak = state.winner_streak.get((description, best), 0) + 1
                    winner_streak[(description, best)] = streak
                    if streak >= self.graduation_rounds:
                        graduations.append(Graduation(description, best, streak, p_pos, loss[best]))
            seg_results.append(
                SegmentResult(
                    id=seg.id,
                    description=description,
                    rule=seg.rule,
                    share=float(seg.share),
                    best_arm=best,
                    arm_best_probabilities={str(k): float(v) for k, v in seg.arm_best_probabilities.items()},
                    lifts=lifts,
                    expected_loss=loss,
                    allocation={str(k): float(v) for k, v in allocation[seg.id].items()},
                    arm_probabilities={},
                )
            )

        plan = make_plan(
            self.arms,
            [(seg.id, seg.rule) for seg in segments],
            allocation,
            weights=self.weights,
            active_arms=active,
            default_allocation=population,
            round=state.round + 1,
            descriptions={s.id: s.description for s in seg_results},
        )
        seg_results = [
            replace(s, arm_probabilities=plan.segment(s.id).arm_probabilities) for s in seg_results
        ]
        this_round = np.asarray(data.round) == state.round if data.round is not None else np.ones(data.n, bool)
        result = RoundResult(
            round=state.round,
            n_round=int(len(new_rows)),
            n_total=int(data.n),
            lifts=_lifts(self.arms, posterior.mean_contrasts(), self.level),
            ipw_arm_means=ipw_arm_means(data),
            segments=tuple(seg_results),
            cells=cell_observations(posterior, data, this_round, self.level),
            active_arms=active,
            dropped=tuple(dropped),
            graduations=tuple(graduations),
            plan=plan,
            recommendations=recommendations,
            tree=tree,
            seconds=timings,
        )
        # commit: the only mutation of the experiment
        self._state = ExperimentState(
            round=state.round + 1,
            data=all_rows,
            plan=plan,
            active_arms=active,
            results=(*state.results, result),
            plans=(*state.plans, plan),
            loser_streak=loser_streak,
            winner_streak=winner_streak,
            posterior=posterior,
            tree=tree,
        )
        return result

    # --- helpers ---------------------------------------------------------------------------------
    def _validate(self, round_data: pd.DataFrame, state: ExperimentState) -> pd.DataFrame:
        if not isinstance(round_data, pd.DataFrame):
            raise TypeError(f"round data must be a pandas DataFrame, got {type(round_data).__name__}")
        missing = [c for c in ("subject", "arm", "outcome") if c not in round_data.columns]
        if missing:
            raise ValueError(
                f"round data lacks columns {missing}; it needs subject, arm, outcome, propensity "
                "(and optionally cell, round, covariates)"
            )
        if len(round_data) == 0:
            raise ValueError("round data has no rows")
        rows = round_data.reset_index(drop=True).copy()
        rows["arm"] = rows["arm"].astype(str)
        unknown = ~rows["arm"].isin(self.arms)
        if unknown.any():
            first = np.flatnonzero(unknown.to_numpy())[:5].tolist()
            raise ValueError(
                f"column 'arm' has values not among the arms {list(self.arms)} at rows {first} "
                f"({rows['arm'][unknown].unique()[:5].tolist()})"
            )
        if "round" not in rows.columns:
            rows["round"] = state.round
        if "cell" not in rows.columns:
            rows["cell"] = "unknown"
        had = state.data is not None and "propensity" in state.data.columns
        has = "propensity" in rows.columns
        if state.data is not None and had != has:
            raise ValueError(
                "column 'propensity' must be present in every round or in none "
                f"(earlier rounds {'had' if had else 'lacked'} it)"
            )
        if state.data is not None:
            seen = set(state.data["subject"].tolist())
            repeat = rows["subject"].isin(seen).to_numpy()
            if repeat.any():
                raise ValueError(
                    f"subjects already seen in earlier rounds at rows {np.flatnonzero(repeat)[:5].tolist()}; "
                    "each subject enters the experiment once"
                )
        return rows

    def _experiment_data(self, rows: pd.DataFrame) -> Any:
        from sortition.data import ExperimentData

        covariates = self.covariates
        if covariates is None:
            covariates = [c for c in rows.columns if c not in _IGNORED]
        return ExperimentData.from_frame(
            rows,
            arm="arm",
            outcome="outcome",
            subject="subject",
            arms=self.arms,
            covariates=covariates,
            propensity="propensity" if "propensity" in rows.columns else None,
            cell="cell",
            round="round",
        )

    @staticmethod
    def _mask(rule: Any, data: Any) -> np.ndarray:
        if rule is None:
            return np.ones(data.n, dtype=bool)
        return np.asarray(rule.mask(data), dtype=bool)


def sequential_experiment(arms: Sequence[str], **kwargs: Any) -> SequentialExperiment:
    """Make a :class:`SequentialExperiment` (keywords as its constructor)."""
    return SequentialExperiment(arms, **kwargs)


# --- small pure helpers (shared with the report) ----------------------------------------------------
def _lifts(arms: Sequence[str], mean_contrasts: np.ndarray, level: float) -> tuple[Lift, ...]:
    return tuple(Lift(str(a.arm), a.mean, a.lower, a.upper, a.prob_positive)
                 for a in summarize_lifts(arms, mean_contrasts, level))


def ipw_arm_means(data: Any) -> dict[str, float]:
    """Self-normalized inverse-propensity (Hajek) mean outcome per arm over all rows.

    Under adaptive, segment-dependent allocations the raw arm means are biased toward the
    segments that received an arm more often; weighting each row by 1 / propensity undoes it.
    Without recorded propensities the plain means are returned.
    """
    y = np.asarray(data.outcome, float)
    w = np.ones_like(y) if data.propensity is None else 1.0 / np.asarray(data.propensity, float)
    out = {}
    for k, arm in enumerate(data.arms):
        rows = data.arm_index == k
        out[str(arm)] = float(np.sum(w[rows] * y[rows]) / np.sum(w[rows])) if rows.any() else float("nan")
    return out


def cell_observations(posterior: Any, data: Any, rows: np.ndarray, level: float) -> tuple[CellObservation, ...]:
    """Per cell, over ``rows`` (n,) bool: counts, mean outcome, empirical and model-based lift."""
    if data.cell is None:
        return ()
    # cell labels compared once per distinct value (not as an (n,) array of strings: 280 MB at 10M rows)
    codes, levels = pd.factorize(np.asarray(data.cell, dtype=object))
    labels = np.array([str(v) for v in levels], dtype=object)

    def in_named(name: str) -> np.ndarray:
        return rows & np.isin(codes, np.flatnonzero(labels == name))

    y = np.asarray(data.outcome, float)
    control_cell = in_named("control")
    control_mean = float(y[control_cell].mean()) if control_cell.any() else None
    q = [(1 - level) / 2, (1 + level) / 2]
    out = []
    for name in CELLS:
        in_cell = in_named(name)
        n = int(in_cell.sum())
        if n == 0:
            continue
        acc = np.zeros(posterior.n_draws)
        for k in range(1, len(data.arms)):
            sel = in_cell & (data.arm_index == k)
            if sel.any():
                acc += sel.sum() * posterior.segment_mean_contrasts(sel)[:, k - 1]
        acc /= n
        lo, hi = np.quantile(acc, q)
        mean = float(y[in_cell].mean())
        out.append(
            CellObservation(
                cell=name,
                n=n,
                mean_outcome=mean,
                empirical_lift=None if control_mean is None else mean - control_mean,
                model_lift=float(acc.mean()),
                model_lower=float(lo),
                model_upper=float(hi),
            )
        )
    return tuple(out)


def _describe(rule: Any) -> str:
    if rule is None:
        return "everyone"
    text = rule.describe() if callable(getattr(rule, "describe", None)) else str(rule)
    return text or "everyone"


def save_experiment(experiment: SequentialExperiment, path: str | Path) -> Path:
    """``experiment.save(path)``: the state file, written atomically."""
    return experiment.save(path)


def load_experiment(path: str | Path) -> SequentialExperiment:
    """``SequentialExperiment.load(path)``."""
    return SequentialExperiment.load(path)
