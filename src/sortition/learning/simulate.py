"""A closed-loop contextual-bandit simulation: serve, log, retrain, repeat.

Each round, fresh synthetic subjects arrive; the current model, published as flags + bandit
models JSON, is served by Sortition's ``Client`` (deterministic hash-based selection, exactly as
in production), which logs every served action, with the actions offered, to the
``EventStore`` (so other models can be evaluated off-line on it: ``sortition bandit evaluate``);
rewards are appended as outcomes; then the model is retrained from the store's decision-reward join over ALL rounds.
Round 0 starts cold (an empty model: uniform weights).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sortition.learning.environment import SyntheticEnvironment
from sortition.learning.events import BanditEvents
from sortition.learning.model import BanditModel, bandit_flags_json, bandit_models_json
from sortition.learning.training import SqrtGamma, cold_start_model, train_bandit
from sortition.serving import Client, Configuration
from sortition.store import EventStore, StoreLogger

REWARD_METRIC = "reward"


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
    store: EventStore | None = None,
    flag_key: str = "bandit-flag",
    on_round: Callable[[RoundResult], None] | None = None,
) -> SimulationResult:
    """Run the loop for ``rounds`` rounds and return per-round rewards and regret.

    Args:
        env: the synthetic environment (known truth).
        gamma, action_probability_floor, l2: passed to :func:`train_bandit` each round.
        store: the event store the client logs to and training reads from (default: an
            in-memory DuckDB store). Rewards are appended as outcomes of metric "reward".
        on_round: called after each round (progress reporting).
    """
    if rounds < 1 or subjects_per_round < 1:
        raise ValueError(f"rounds ({rounds}) and subjects_per_round ({subjects_per_round}) must be >= 1")
    store = store if store is not None else EventStore(":memory:")
    logger = StoreLogger(store, buffer_size=max(subjects_per_round, 1))
    seeds = np.random.SeedSequence(seed).spawn(rounds)
    model = cold_start_model("bandit", gamma, action_probability_floor)
    keys = list(env.action_keys)
    offered = env.offered()
    results = []
    for r in range(rounds):
        rng = np.random.default_rng(seeds[r])
        ctx = env.sample_contexts(subjects_per_round, rng, prefix=f"{seed}-{r}-")
        q = env.expected_rewards(ctx)
        client = Client(
            Configuration.from_json(bandit_flags_json(model, flag_key), bandit_models_json([model])),
            bandit_logger=logger,
        )
        # the batch call: same results and events as get_bandit_action per subject, scored together
        served = client.get_bandit_actions(
            flag_key, [(ctx.subject[i], ctx.attributes(i)) for i in range(ctx.n)], offered, "none"
        )
        chosen = np.empty(ctx.n, dtype=int)
        for i, result in enumerate(served):
            if result.action is None:
                raise RuntimeError(f"the client served no action for {ctx.subject[i]}: {result}")
            chosen[i] = keys.index(result.action)
        logger.flush()
        expected = q[np.arange(ctx.n), chosen]
        reward = env.draw_rewards(expected, rng)
        now = dt.datetime.now(dt.UTC)
        store.append_outcomes(
            [
                {
                    "subject": ctx.subject[i],
                    "metric": REWARD_METRIC,
                    "value": float(reward[i]),
                    "timestamp": now,
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
        logged = store.bandit_rewards(REWARD_METRIC, flag_key=flag_key)
        model = train_bandit(
            BanditEvents.from_frame(logged),
            bandit_key="bandit",
            gamma=gamma,
            action_probability_floor=action_probability_floor,
            l2=l2,
            model_version=f"round-{r + 1}",
        )
    return SimulationResult(tuple(results), model)
