"""A closed-loop contextual-bandit simulation: serve, log, retrain, repeat.

Each round, fresh synthetic subjects arrive; the current model, published as flags + bandit
models JSON, is served by Sortition's ``Client`` (deterministic hash-based selection, exactly as
in production), which logs every served action, with the actions offered, to the
``EventStore`` (so other models can be evaluated off-line on it: ``sortition bandit evaluate``);
rewards are appended as outcomes; then the model is retrained from the store's decision-reward join over
ALL rounds, in the store (``sortition.learning.sufficient``: SQL sufficient statistics).
Round 0 starts cold (an empty model: uniform weights). With ``update_every=N`` the served model is
also updated within each round, every N events (``sortition.learning.incremental``), starting from
the round's retrained statistics, and the client is handed each new model version as it is made.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sortition.learning.environment import SyntheticEnvironment
from sortition.learning.events import BanditEvents
from sortition.learning.incremental import ColdStart, IncrementalBandit
from sortition.learning.model import BanditModel, bandit_flags_json, bandit_models_json
from sortition.learning.sufficient import model_from_statistics, store_statistics
from sortition.learning.training import SqrtGamma, cold_start_model
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
        gamma: the served model's gamma; n_trained: events the served model was trained on;
            model_version: the round's first served model; updates: in-round model updates.
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
    updates: int = 0


@dataclass(frozen=True)
class SimulationResult:
    rounds: tuple[RoundResult, ...]
    final_model: BanditModel

    @property
    def cumulative_regret(self) -> float:
        return float(sum(r.regret * r.n_subjects for r in self.rounds))


def _configuration(model: BanditModel, flag_key: str) -> Configuration:
    """What is published for ``model``: a flag routing all traffic to it, and the model file."""
    return Configuration.from_json(bandit_flags_json(model, flag_key), bandit_models_json([model]))


def _require_no_events(store: EventStore) -> None:
    """Refuse a store that holds events: the simulation would train on them as its own (another run's,
    or a real experiment's), and would write simulated events among real ones."""
    held = {kind: n for kind, n in store.event_counts().items() if n}
    if held:
        what = ", ".join(f"{n:,} {kind} events" for kind, n in held.items())
        raise ValueError(f"the store {store!r} already holds {what}; a simulation logs its own and trains on "
                         "every event there, so give it a new store file, or none (in memory)")


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
    update_every: int | None = None,
    cold_start: ColdStart = ColdStart(),
) -> SimulationResult:
    """Run the loop for ``rounds`` rounds and return per-round rewards and regret.

    Args:
        env: the synthetic environment (known truth).
        gamma, action_probability_floor, l2: the training parameters (``train_bandit``'s).
        store: the event store the client logs to and training reads from (default: an
            in-memory DuckDB store); one that already holds events is refused (ValueError). Rewards are
            appended as outcomes of metric "reward".
        on_round: called after each round (progress reporting).
        update_every: None retrains once per round; N also updates the served model every N events
            within a round (incremental ridge; versions ``"round-r+u"``).
        cold_start: the incremental updates' ``ColdStart`` bonus (with ``update_every`` only).
    """
    if rounds < 1 or subjects_per_round < 1:
        raise ValueError(f"rounds ({rounds}) and subjects_per_round ({subjects_per_round}) must be >= 1")
    store = store if store is not None else EventStore(":memory:")
    _require_no_events(store)
    logger = StoreLogger(store, buffer_size=max(subjects_per_round, 1))
    seeds = np.random.SeedSequence(seed).spawn(rounds)
    options = {"bandit_key": "bandit", "gamma": gamma, "action_probability_floor": action_probability_floor,
               "l2": l2}
    model = cold_start_model("bandit", gamma, action_probability_floor)
    learner = None
    if update_every is not None:
        learner = IncrementalBandit.cold(update_every=update_every, cold_start=cold_start,
                                         base_version="round-0", **options)
        model = learner.model_
    keys = list(env.action_keys)
    offered = env.offered()
    results = []
    for r in range(rounds):
        rng = np.random.default_rng(seeds[r])
        ctx = env.sample_contexts(subjects_per_round, rng, prefix=f"{seed}-{r}-")
        q = env.expected_rewards(ctx)
        first_model, client = model, Client(_configuration(model, flag_key), bandit_logger=logger)
        step = update_every or ctx.n
        chosen = np.empty(ctx.n, dtype=int)
        reward = np.empty(ctx.n)
        updates = 0
        for start in range(0, ctx.n, step):
            rows = range(start, min(start + step, ctx.n))
            # the batch call: same results and events as get_bandit_action per subject, scored together
            served = client.get_bandit_actions(
                flag_key, [(ctx.subject[i], ctx.attributes(i)) for i in rows], offered, "none"
            )
            probability = np.empty(len(rows))
            for j, (i, result) in enumerate(zip(rows, served, strict=True)):
                if result.action is None:
                    raise RuntimeError(f"the client served no action for {ctx.subject[i]}: {result}")
                chosen[i] = keys.index(result.action)
                probability[j] = result.evaluation.action_weight
            logger.flush()
            idx = np.asarray(rows)
            reward[idx] = env.draw_rewards(q[idx, chosen[idx]], rng)
            now = dt.datetime.now(dt.UTC)
            store.append_outcomes(
                [
                    {"subject": ctx.subject[i], "metric": REWARD_METRIC, "value": float(reward[i]),
                     "timestamp": now}
                    for i in rows
                ]
            )
            new = _events(env, ctx, idx, chosen[idx], reward[idx], probability)
            if learner is not None and learner.learn(new):
                model = learner.model_
                client.set_configuration(_configuration(model, flag_key))
                updates += 1
        expected = q[np.arange(ctx.n), chosen]
        result = RoundResult(
            round=r,
            n_subjects=ctx.n,
            reward=float(reward.mean()),
            expected_reward=float(expected.mean()),
            uniform_reward=float(q.mean(axis=1).mean()),
            oracle_reward=float(q.max(axis=1).mean()),
            regret=float(q.max(axis=1).mean() - expected.mean()),
            gamma=first_model.gamma,
            n_trained=first_model.n_events,
            model_version=first_model.model_version,
            updates=updates,
        )
        results.append(result)
        if on_round is not None:
            on_round(result)
        stats = store_statistics(store, REWARD_METRIC, flag_key=flag_key)
        model = model_from_statistics(stats, model_version=f"round-{r + 1}", **options)
        if learner is not None:
            learner = IncrementalBandit.from_statistics(
                stats, update_every=update_every, cold_start=cold_start, base_version=f"round-{r + 1}",
                **options,
            )
            model = learner.model_
    return SimulationResult(tuple(results), model)


def _events(env: SyntheticEnvironment, ctx, rows: np.ndarray, chosen: np.ndarray, reward: np.ndarray,
            probability: np.ndarray) -> BanditEvents:
    """The served decisions of ``rows`` as training events (what the store's join would give)."""
    keys = env.action_keys
    groups = [env.actions[keys[a]] for a in chosen]
    return BanditEvents(
        action=np.array([keys[a] for a in chosen], dtype=object),
        reward=np.asarray(reward, dtype=float),
        action_probability=np.asarray(probability, dtype=float),
        subject_numeric=tuple(ctx.numeric[i] for i in rows),
        subject_categorical=tuple(ctx.categorical[i] for i in rows),
        action_numeric=tuple(g.get("numericAttributes", {}) for g in groups),
        action_categorical=tuple(g.get("categoricalAttributes", {}) for g in groups),
    )
