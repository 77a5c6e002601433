"""A closed-loop contextual-bandit simulation: serve, log, retrain, repeat.

Each round, fresh synthetic subjects arrive; the current model is served by Sortition's
request-time evaluator (deterministic hash-based selection, exactly as in production); every
served action is logged with its probability and reward; then the model is retrained from ALL
logged events. Round 0 starts cold (an empty model: uniform weights).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sortition.learning.environment import SyntheticEnvironment
from sortition.learning.events import BanditEvents
from sortition.learning.model import BanditModel
from sortition.learning.training import SqrtGamma, cold_start_model, train_bandit
from sortition.serving.bandits import evaluate_bandit


class EventLog(Protocol):
    """Where the simulation logs served actions and reads them back for training."""

    def append(self, records: list[dict[str, Any]]) -> None: ...

    def read(self) -> BanditEvents: ...


@dataclass
class MemoryEventLog:
    """An in-memory EventLog (the default when no store is given)."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def append(self, records: list[dict[str, Any]]) -> None:
        self.records.extend(records)

    def read(self) -> BanditEvents:
        return BanditEvents.from_records(self.records)


@dataclass(frozen=True)
class RoundResult:
    """One round's outcome; rewards are means per subject in that round.

    Attributes:
        reward: realized mean reward of the served actions.
        expected_reward: mean expected reward of the served actions (noise-free).
        uniform_reward: mean expected reward had each action been equally likely.
        oracle_reward: mean expected reward of the best action for each subject.
        regret: oracle_reward - expected_reward.
        gamma: the served model's gamma; n_trained: events the served model was trained on.
    """

    round: int
    n_subjects: int
    reward: float
    expected_reward: float
    uniform_reward: float
    oracle_reward: float
    regret: float
    gamma: float
    n_trained: int
    model_version: str


@dataclass(frozen=True)
class SimulationResult:
    rounds: tuple[RoundResult, ...]
    final_model: BanditModel

    @property
    def cumulative_regret(self) -> float:
        return float(sum(r.regret * r.n_subjects for r in self.rounds))


def simulate_bandit(
    env: SyntheticEnvironment,
    rounds: int = 10,
    subjects_per_round: int = 500,
    seed: int = 0,
    gamma: float | SqrtGamma = SqrtGamma(1.0),
    action_probability_floor: float = 0.05,
    l2: float = 1.0,
    log: EventLog | None = None,
    flag_key: str = "bandit-flag",
    on_round: Callable[[RoundResult], None] | None = None,
) -> SimulationResult:
    """Run the loop for ``rounds`` rounds and return per-round rewards and regret.

    Args:
        env: the synthetic environment (known truth).
        gamma, action_probability_floor, l2: passed to :func:`train_bandit` each round.
        log: where events go and are read back from (default: in memory).
        on_round: called after each round (progress reporting).
    """
    if rounds < 1 or subjects_per_round < 1:
        raise ValueError(f"rounds ({rounds}) and subjects_per_round ({subjects_per_round}) must be >= 1")
    log = log if log is not None else MemoryEventLog()
    seeds = np.random.SeedSequence(seed).spawn(rounds)
    model = cold_start_model("bandit", gamma, action_probability_floor)
    offered = env.offered()
    results = []
    for r in range(rounds):
        rng = np.random.default_rng(seeds[r])
        ctx = env.sample_contexts(subjects_per_round, rng, prefix=f"{seed}-{r}-")
        q = env.expected_rewards(ctx)
        serving = model.serving_model()
        keys = list(env.action_keys)
        chosen = np.empty(ctx.n, dtype=int)
        prob = np.empty(ctx.n)
        for i in range(ctx.n):
            e = evaluate_bandit(flag_key, ctx.subject[i], ctx.attributes(i), offered, serving)
            chosen[i] = keys.index(e.action_key)
            prob[i] = e.action_weight
        expected = q[np.arange(ctx.n), chosen]
        reward = env.draw_rewards(expected, rng)
        log.append(
            [
                {
                    "subject": ctx.subject[i],
                    "action": keys[chosen[i]],
                    "action_probability": float(prob[i]),
                    "reward": float(reward[i]),
                    "subject_numeric_attributes": ctx.numeric[i],
                    "subject_categorical_attributes": ctx.categorical[i],
                    "action_numeric_attributes": env.actions[keys[chosen[i]]].get("numericAttributes", {}),
                    "action_categorical_attributes": env.actions[keys[chosen[i]]].get("categoricalAttributes", {}),
                    "offered": env.actions,
                }
                for i in range(ctx.n)
            ]
        )
        result = RoundResult(
            round=r,
            n_subjects=ctx.n,
            reward=float(reward.mean()),
            expected_reward=float(expected.mean()),
            uniform_reward=float(q.mean(axis=1).mean()),
            oracle_reward=float(q.max(axis=1).mean()),
            regret=float(q.max(axis=1).mean() - expected.mean()),
            gamma=model.gamma,
            n_trained=model.n_events,
            model_version=model.model_version,
        )
        results.append(result)
        if on_round is not None:
            on_round(result)
        model = train_bandit(
            log.read(),
            bandit_key="bandit",
            gamma=gamma,
            action_probability_floor=action_probability_floor,
            l2=l2,
            model_version=f"round-{r + 1}",
        )
    return SimulationResult(tuple(results), model)
