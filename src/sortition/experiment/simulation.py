"""Simulated adaptive experiments: a scenario's visitors served through the Client, round by round.

Each round: the experiment's current plan is exported as a flag configuration; new visitors
(with attributes) are assigned by :class:`sortition.serving.Client` against it, which logs an
assignment event per visitor carrying the cell, segment, round and propensity; outcomes are
drawn from the scenario's truth for the arms actually served; events go to an event store when
one is given; the experiment reads the round's rows and advances. Regret is measured on the
scenario's expected outcomes (not the noisy draws), against the oracle and against a uniform
A/B test on the same visitors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sortition.experiment.schedules import Schedule, as_schedule
from sortition.experiment.sequential import RoundResult, SequentialExperiment
from sortition.policy import best_arms
from sortition.store.records import CELL_KEY, PROPENSITY_KEY, ROUND_KEY, SEGMENT_KEY

OUTCOME_METRIC = "outcome"


@dataclass(frozen=True)
class SimulationRound:
    """One simulated round: traffic, rewards (sums of expected outcomes) and the fit's result."""

    round: int
    n: int
    arm_counts: dict[str, int]
    reward: float  # sum of expected outcomes of the arms served
    oracle_reward: float  # ... of each visitor's best arm
    uniform_reward: float  # ... of a uniform A/B test on the same visitors
    result: RoundResult
    seconds: float

    @property
    def regret(self) -> float:
        return self.oracle_reward - self.reward

    @property
    def uniform_regret(self) -> float:
        return self.oracle_reward - self.uniform_reward


@dataclass(frozen=True)
class SegmentCheck:
    """A final segment's chosen best arm against the truth on fresh visitors."""

    id: Any
    description: str
    share: float
    best_arm: str
    true_best_arm: str
    true_values: dict[str, float]  # mean expected outcome per arm over the segment's visitors

    @property
    def correct(self) -> bool:
        return self.best_arm == self.true_best_arm


@dataclass(frozen=True)
class SimulationResult:
    """A finished simulation: per-round figures, final segment checks, served configurations."""

    scenario: str
    arms: tuple[str, ...]
    outcome: str
    rounds: tuple[SimulationRound, ...]
    segments: tuple[SegmentCheck, ...]
    configurations: tuple[dict[str, Any], ...]
    experiment: SequentialExperiment
    policy_values: dict[str, float]  # per visitor: oracle, segments (best arm per final segment), plan, uniform

    @property
    def cumulative_regret(self) -> np.ndarray:
        return np.cumsum([r.regret for r in self.rounds])

    @property
    def cumulative_uniform_regret(self) -> np.ndarray:
        return np.cumsum([r.uniform_regret for r in self.rounds])

    @property
    def regret(self) -> float:
        return float(self.cumulative_regret[-1])

    @property
    def uniform_regret(self) -> float:
        return float(self.cumulative_uniform_regret[-1])

    @property
    def segment_accuracy(self) -> float:
        """Share of final traffic whose segment's chosen arm is the segment's true best arm."""
        total = sum(s.share for s in self.segments)
        return float(sum(s.share for s in self.segments if s.correct) / total) if total else float("nan")


class _Events:
    """An assignment logger that keeps events in memory and forwards them to a store's logger."""

    def __init__(self, forward: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._forward = forward

    def log_assignment(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self._forward is not None:
            self._forward.log_assignment(event)


def visitor_attributes(visitors: pd.DataFrame) -> list[dict[str, Any]]:
    """Flat request attributes per visitor: missing values dropped, numpy scalars made plain."""
    columns = list(visitors.columns)
    out = []
    for row in visitors.itertuples(index=False, name=None):
        attrs: dict[str, Any] = {}
        for name, value in zip(columns, row, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
                continue
            if isinstance(value, np.generic):
                value = value.item()
            attrs[name] = value
        out.append(attrs)
    return out


def simulate(
    scenario: Any,
    experiment: SequentialExperiment,
    schedule: Schedule | Sequence[int] | None = None,
    *,
    seed: int = 0,
    store: Any = None,
    eval_visitors: int = 20_000,
    on_round: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> SimulationResult:
    """Run ``experiment`` on ``scenario`` for every round of ``schedule``.

    Args:
        scenario: a :class:`sortition.scenarios.Scenario` (``sample_visitors``, ``sample_outcomes``,
            ``truth``); the experiment's arms must be the scenario's.
        experiment: a fresh :class:`SequentialExperiment`.
        schedule: visitors per round (default: the experiment's schedule).
        seed: seeds visitors and outcomes (the experiment has its own fit seed).
        store: an event store (``sortition.store.EventStore``) receiving every assignment,
            outcome and served configuration; the round's rows are read back from it.
        eval_visitors: fresh visitors used to check the final segments against the truth.
        on_round: progress callback ``(stage, round, info)``; stages "assign", "fit", "done".
    """
    from sortition.serving import Client, Configuration

    schedule = as_schedule(schedule if schedule is not None else experiment.schedule)
    if tuple(scenario.arms) != tuple(experiment.arms):
        raise ValueError(f"the experiment's arms {experiment.arms} differ from the scenario's {scenario.arms}")
    if experiment.round_ != 0:
        raise ValueError("simulate needs a fresh experiment (round 0)")
    arms = tuple(experiment.arms)
    control = arms[0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    notify = on_round or (lambda stage, r, info: None)
    rounds: list[SimulationRound] = []
    configurations: list[dict[str, Any]] = []

    logger = None
    if store is not None:
        from sortition.store import StoreLogger

        logger = StoreLogger(store, buffer_size=max(schedule.sizes) + 1)
    for r, size in enumerate(schedule):
        t0 = time.perf_counter()
        config = experiment.configuration()
        configurations.append(config)
        if store is not None:
            store.save_configuration(config, version=r + 1)
        notify("assign", r, {"n": size})
        events = _Events(logger)
        client = Client(Configuration.from_json(config), assignment_logger=events)
        visitors = scenario.sample_visitors(size, rng)
        subjects = [f"r{r:02d}-{i:06d}" for i in range(size)]
        served = [
            client.get_assignment(experiment.key, s, attrs, control)
            for s, attrs in zip(subjects, visitor_attributes(visitors), strict=True)
        ]
        if len(events.events) != size:
            raise RuntimeError(f"round {r}: {len(events.events)} assignment events for {size} visitors")
        arm_index = np.array([arms.index(a) for a in served])
        outcomes = scenario.sample_outcomes(visitors, arm_index, rng)
        if store is not None:
            logger.flush()
            rows = _store_round(store, experiment, subjects, outcomes, r)
        else:
            rows = round_frame(events.events, visitors, subjects, outcomes)
        expected = scenario.truth(visitors).expected
        notify("fit", r, {"n": size})
        result = experiment.advance(rows)
        take = expected[np.arange(size), arm_index]
        rounds.append(
            SimulationRound(
                round=r,
                n=size,
                arm_counts={a: int((arm_index == k).sum()) for k, a in enumerate(arms)},
                reward=float(take.sum()),
                oracle_reward=float(expected.max(axis=1).sum()),
                uniform_reward=float(expected.mean(axis=1).sum()),
                result=result,
                seconds=time.perf_counter() - t0,
            )
        )
        notify("done", r, {"round": rounds[-1]})

    checks, values = _check_segments(scenario, experiment, eval_visitors, rng)
    return SimulationResult(
        scenario=getattr(scenario, "name", str(scenario)),
        arms=arms,
        outcome=experiment.outcome,
        rounds=tuple(rounds),
        segments=checks,
        configurations=tuple(configurations),
        experiment=experiment,
        policy_values=values,
    )


def _store_round(store: Any, experiment: SequentialExperiment, subjects: Sequence[str], outcomes: np.ndarray,
                 round_index: int) -> pd.DataFrame:
    """Log the round's outcomes, then read the round's rows back through the exposure/outcome join."""
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    # purchases and conversions are events; a visitor without one has outcome 0 in the join
    keep = np.ones(len(subjects), bool) if experiment.outcome == "continuous" else np.asarray(outcomes) != 0
    store.append_outcomes(
        [
            {"subject": s, "metric": OUTCOME_METRIC, "value": float(y), "timestamp": now}
            for s, y, k in zip(subjects, outcomes, keep, strict=True)
            if k
        ]
    )
    frame = store.experiment_frame(experiment.key, OUTCOME_METRIC)
    frame = frame[frame["round"] == round_index].rename(columns={"y": "outcome"}).reset_index(drop=True)
    if len(frame) != len(subjects):
        raise RuntimeError(f"round {round_index}: the store returned {len(frame)} rows for {len(subjects)} visitors")
    frame["round"] = frame["round"].astype(int)
    return frame


def round_frame(
    events: Sequence[dict[str, Any]], visitors: pd.DataFrame, subjects: Sequence[str], outcomes: np.ndarray
) -> pd.DataFrame:
    """The round's rows for :meth:`SequentialExperiment.advance` from its assignment events.

    The arm, cell, segment, round and propensity come from the events (what was served); the
    covariates are the visitors' raw attributes.
    """
    by_subject = {e["subject"]: e for e in events}
    head = pd.DataFrame(
        {
            "subject": list(subjects),
            "arm": [by_subject[s]["variation"] for s in subjects],
            "outcome": np.asarray(outcomes, dtype=float),
            "propensity": [float(by_subject[s][PROPENSITY_KEY]) for s in subjects],
            "cell": [by_subject[s][CELL_KEY] for s in subjects],
            "segment": [by_subject[s][SEGMENT_KEY] for s in subjects],
            "round": [int(by_subject[s][ROUND_KEY]) for s in subjects],
        }
    )
    return pd.concat([head, visitors.reset_index(drop=True)], axis=1)


def _check_segments(
    scenario: Any, experiment: SequentialExperiment, n: int, rng: np.random.Generator
) -> tuple[tuple[SegmentCheck, ...], dict[str, float]]:
    """Final segments vs truth on fresh visitors, and per-visitor values of candidate policies."""
    if not experiment.results_:
        return (), {}
    arms = experiment.arms
    visitors = scenario.sample_visitors(n, rng)
    expected = scenario.truth(visitors).expected  # (n, K)
    plan = experiment.plan_
    result = experiment.results_[-1]
    position = plan.segment_index(visitors)
    plan_value = (expected * plan.probabilities(visitors)).sum(axis=1)
    chosen = np.zeros(n, dtype=np.int64)  # the catch-all serves control under "best arm per segment"
    checks = []
    for i, seg in enumerate(result.segments):
        mask = position == i
        if not mask.any():
            continue
        chosen[mask] = arms.index(seg.best_arm)
        values = expected[mask].mean(axis=0)
        checks.append(
            SegmentCheck(
                id=seg.id,
                description=seg.description,
                share=float(mask.mean()),
                best_arm=seg.best_arm,
                true_best_arm=arms[int(best_arms(values[1:] - values[0]))],
                true_values={a: float(v) for a, v in zip(arms, values, strict=True)},
            )
        )
    values = {
        "oracle": float(expected.max(axis=1).mean()),
        "segments": float(expected[np.arange(n), chosen].mean()),
        "plan": float(plan_value.mean()),
        "uniform": float(expected.mean(axis=1).mean()),
        "control": float(expected[:, 0].mean()),
        "best_single_arm": float(expected.mean(axis=0).max()),
    }
    return tuple(checks), values
