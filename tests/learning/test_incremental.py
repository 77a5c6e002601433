"""Incremental ridge updates: exact, deterministic, versioned; cold start explores; served in-round."""

from __future__ import annotations

import numpy as np
import pytest

from sortition.learning import SqrtGamma
from sortition.learning.environment import make_environment
from sortition.learning.features import fit_layout
from sortition.learning.incremental import ColdStart, IncrementalBandit, event_statistics, numeric_layout
from sortition.learning.simulate import simulate_bandit
from sortition.learning.sufficient import model_from_statistics, store_statistics
from sortition.serving.bandits import action_weights, score_actions
from sortition.store import EventStore


@pytest.fixture(scope="module")
def logs():
    env = make_environment(n_actions=3, seed=0)
    return env, env.log_events(900, seed=1)[0]


def _layout(ev):
    return fit_layout(
        {"subject": ev.subject_numeric, "action": ev.action_numeric},
        {"subject": ev.subject_categorical, "action": ev.action_categorical},
    )


def test_rank_k_updates_give_the_batch_solution_and_a_version_per_update(logs):
    _, ev = logs
    layout = _layout(ev)
    learner = IncrementalBandit.cold(layout, update_every=64, l2=0.5)
    published = learner.learn(ev)
    assert len(published) == 900 // 64
    assert [m.model_version for m in published] == [f"0+{u}" for u in range(1, 15)]
    assert [m.n_events for m in published] == [64 * u for u in range(1, 15)]
    final = learner.flush()
    assert final.model_version == "0+15" and final.n_events == 900 and learner.flush() is None
    for action in ev.actions:
        batch = event_statistics(layout, ev.take(np.flatnonzero(ev.action == action)))
        expected = batch.coefficients(action, 0.5)
        got = final.coefficients[action]
        assert got.intercept == pytest.approx(expected.intercept, abs=1e-9)
        for (_, c1, m1), (_, c2, m2) in zip(got.subject_numeric, expected.subject_numeric, strict=True):
            assert (c1, m1) == pytest.approx((c2, m2), abs=1e-9)
    weights = np.minimum(1 / ev.action_probability, 20.0)
    assert final.default_action_score == pytest.approx(np.average(ev.reward, weights=weights), abs=1e-12)


def test_updates_are_deterministic_whatever_the_batches(logs):
    _, ev = logs
    one = IncrementalBandit.cold(update_every=50)
    one.learn(ev)
    other = IncrementalBandit.cold(update_every=50)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, ev.n), 12, replace=False))
    for piece in np.split(np.arange(ev.n), cuts):
        other.learn(ev.take(piece))
    assert one.model_.model_data() == other.model_.model_data()
    assert one.model_.model_version == other.model_.model_version == "0+18"


def test_continues_from_the_stores_statistics(logs, tmp_path):
    env, _ = logs
    with EventStore(str(tmp_path / "e.duckdb")) as store:
        simulate_bandit(env, rounds=2, subjects_per_round=200, seed=5, store=store)
        stats = store_statistics(store, "reward")
    learner = IncrementalBandit.from_statistics(
        stats, update_every=10, base_version="v7", gamma=SqrtGamma(2.0)
    )
    retrained = model_from_statistics(stats, model_version="v7+0", gamma=SqrtGamma(2.0))
    assert learner.model_.model_data() == retrained.model_data()
    assert learner.model_.model_version == "v7+0" and learner.model_.n_events == 400
    new = env.log_events(10, seed=9)[0]
    (model,) = learner.learn(new)
    assert model.model_version == "v7+1" and model.n_events == 410
    touched = set(new.actions)
    for action, c in model.coefficients.items():
        assert (c == retrained.coefficients[action]) == (action not in touched)


def test_cold_start_explores_actions_it_knows_little_about():
    from sortition.learning.events import BanditEvents

    def tried(n: int) -> BanditEvents:  # "a" is tried n times and pays 0.6
        return BanditEvents(
            np.array(["a"] * n, dtype=object),
            np.full(n, 0.6),
            np.ones(n),
            ({"x": 0.0},) * n,
            ({},) * n,
            ({},) * n,
            ({},) * n,
        )

    learner = IncrementalBandit.cold(
        numeric_layout(["x"]),
        update_every=1,
        cold_start=ColdStart(0.5),
        gamma=50.0,
        importance_weighting="none",
    )
    for _ in range(30):
        learner.learn(tried(1))
    model = learner.model_.serving_model()
    scores = score_actions(model, {"x": 0.0}, {"a": None, "b": None})
    # b has no evidence: optimistic (default + bonus) beats a's 0.6 + 0.5 / sqrt(31)
    assert scores["b"] == pytest.approx(0.6 + 0.5) and scores["a"] == pytest.approx(0.6 + 0.5 / 31**0.5)
    assert action_weights(scores, model.gamma, 0.0)["b"] > 0.9
    plain = IncrementalBandit.cold(numeric_layout(["x"]), update_every=30, gamma=50.0)
    plain.learn(tried(30))
    plain_scores = score_actions(plain.model_.serving_model(), {"x": 0.0}, {"a": None, "b": None})
    assert plain_scores["b"] == pytest.approx(0.6)  # without the bonus b only ties the mean


def test_an_update_republishes_only_the_actions_it_touched():
    from sortition.learning.events import BanditEvents

    def events(action: str, n: int, reward: float) -> BanditEvents:
        x = [{"x": float(i)} for i in range(n)]
        return BanditEvents(
            np.array([action] * n, dtype=object), np.full(n, reward), np.full(n, 0.5), tuple(x),
            ({},) * n, ({},) * n, ({},) * n,
        )

    settings = dict(update_every=1, cold_start=ColdStart(0.5), l2=1.0)
    learner = IncrementalBandit.cold(numeric_layout(["x"]), **settings)
    learner.learn(events("b", 3, 1.0))
    b_before = learner.model_.coefficients["b"]
    learner.learn(events("a", 5, 0.0))
    model = learner.model_
    assert model.coefficients["b"] is b_before  # untouched: neither re-solved nor re-built
    assert list(model.coefficients) == ["a", "b"]  # sorted, whichever action came first
    # a's intercept: its ridge fit (all rewards 0, so 0) plus the bonus for its 5 events
    assert model.coefficients["a"].intercept == pytest.approx(0.5 / 6**0.5, abs=1e-9)
    assert model.coefficients["b"].intercept == pytest.approx(1.0 + 0.5 / 4**0.5, abs=1e-9)
    # the same events in one batch give the same model
    batch = IncrementalBandit.cold(numeric_layout(["x"]), **{**settings, "update_every": 8})
    batch.learn(events("b", 3, 1.0))
    batch.learn(events("a", 5, 0.0))
    assert batch.model_.model_data() == model.model_data()
    assert list(batch.model_.coefficients) == ["a", "b"]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="update_every"):
        IncrementalBandit.cold(update_every=0)
    with pytest.raises(ValueError, match="bonus"):
        ColdStart(-1.0)
    with pytest.raises(ValueError, match="importance_weighting"):
        IncrementalBandit.cold(importance_weighting="dr")


def test_served_model_updates_within_a_round():
    env = make_environment(n_actions=4, seed=3)
    cold = simulate_bandit(env, rounds=2, subjects_per_round=300, seed=1)
    warm = simulate_bandit(env, rounds=2, subjects_per_round=300, seed=1, update_every=50)
    assert cold.rounds[0].updates == 0 and cold.rounds[0].model_version == "cold start"
    assert warm.rounds[0].updates == 6 and warm.rounds[1].model_version == "round-1+0"
    # round 0 is no longer uniform for the whole round: most of its regret is gone
    assert warm.rounds[0].regret < 0.6 * cold.rounds[0].regret
    assert warm.final_model.model_version == "round-2+0" and warm.final_model.n_events == 600
    again = simulate_bandit(env, rounds=2, subjects_per_round=300, seed=1, update_every=50)
    assert [r.expected_reward for r in again.rounds] == [r.expected_reward for r in warm.rounds]
