"""The closed loop: served by Sortition's client, logged to the store, retrained from it."""

from __future__ import annotations

import json

import numpy as np
from cli_helpers import invoke

from sortition.learning import SqrtGamma, load_bandit_models
from sortition.learning.environment import make_environment
from sortition.learning.simulate import simulate_bandit
from sortition.store import EventStore


def test_trained_model_served_by_the_client_beats_uniform():
    env = make_environment(n_actions=4, seed=3)
    with EventStore(":memory:") as store:
        result = simulate_bandit(
            env, rounds=4, subjects_per_round=300, seed=1, gamma=SqrtGamma(1.0), store=store
        )
        assert store.counts()["bandit"] == 1200 and store.counts()["outcome"] == 1200
    first, *rest = result.rounds
    assert first.n_trained == 0 and first.gamma == 0.0  # cold start: uniform
    assert abs(first.expected_reward - first.uniform_reward) < 0.25
    for r in rest:
        assert r.n_trained == 300 * r.round
        assert r.expected_reward - r.uniform_reward > 0.5 * (r.oracle_reward - r.uniform_reward)
    assert rest[-1].regret < 0.3 * first.regret
    assert result.final_model.n_events == 1200


def test_binary_rewards_loop_also_learns():
    env = make_environment(n_actions=3, seed=5, reward="binary")
    result = simulate_bandit(env, rounds=4, subjects_per_round=400, seed=2, gamma=SqrtGamma(0.5))
    late = result.rounds[-1]
    assert late.expected_reward > late.uniform_reward
    assert np.isclose(late.regret, late.oracle_reward - late.expected_reward)


def test_cli_bandit_simulate_prints_rounds_and_writes_the_model(tmp_path):
    out = tmp_path / "model.json"
    res = invoke(["bandit", "simulate", "--rounds", "3", "--subjects", "150", "--save-model", str(out)]
    )
    assert res.exit_code == 0, res.text
    assert "regret" in res.text and "uniform" in res.text and "oracle" in res.text
    models = load_bandit_models(json.loads(out.read_text()))
    assert models["bandit"].n_events == 0 and models["bandit"].model_version == "round-3"
    bad = invoke(["bandit", "simulate", "--reward", "poisson"])
    assert bad.exit_code != 0 and "continuous" in bad.text


def test_cli_bandit_train_from_a_store_and_link_flags(tmp_path):
    from sortition.learning import bandit_flags_json
    from sortition.learning.training import cold_start_model
    from sortition.serving import Client, Configuration

    db = tmp_path / "events.duckdb"
    env = make_environment(n_actions=3, seed=4)
    with EventStore(str(db)) as store:
        simulate_bandit(env, rounds=2, subjects_per_round=200, seed=3, store=store)
    flags_in = tmp_path / "flags.json"
    flags_in.write_text(json.dumps(bandit_flags_json(cold_start_model("bandit"), "bandit-flag")))
    models_out, flags_out = tmp_path / "models.json", tmp_path / "linked.json"
    res = invoke([
            "bandit",
            "train",
            str(db),
            "--metric",
            "reward",
            "--flag",
            "bandit-flag",
            "--out",
            str(models_out),
            "--flags",
            str(flags_in),
            "--out-flags",
            str(flags_out),
        ],
    )
    assert res.exit_code == 0, res.text
    model = load_bandit_models(json.loads(models_out.read_text()))["bandit"]
    assert set(model.coefficients) == set(env.action_keys) and model.model_version == "400"
    client = Client(Configuration.from_json(flags_out.read_text(), models_out.read_text()))
    assert (
        client.get_bandit_action("bandit-flag", "zoe", {"age": 30}, env.offered(), "none").action
        in env.actions
    )
    empty = invoke(["bandit", "train", str(db), "--metric", "reward", "--flag", "bandit-flga", "--out", str(models_out)],
    )
    assert empty.exit_code == 2 and "flag 'bandit-flga' has no bandit decisions" in empty.text
    assert "did you mean 'bandit-flag'?" in empty.text


def test_cli_bandit_train_refuses_bad_flags_before_writing_anything(tmp_path):
    from sortition.learning import bandit_flags_json
    from sortition.learning.training import cold_start_model

    db = tmp_path / "events.duckdb"
    with EventStore(str(db)) as store:
        simulate_bandit(make_environment(n_actions=3, seed=4), rounds=1, subjects_per_round=100, seed=3,
                        store=store)
    other_key = tmp_path / "other.json"
    other_key.write_text(json.dumps(bandit_flags_json(cold_start_model("other"), "bandit-flag")))
    not_flags = tmp_path / "list.json"
    not_flags.write_text("[1, 2]")
    models_out, flags_out = tmp_path / "models.json", tmp_path / "linked.json"
    for flags_in, says in [
        (other_key, "to bandit 'bandit' (--bandit-key): no variation with value 'bandit'"),
        (not_flags, "flags file '" + str(not_flags) + "' is not a flags configuration"),
        (tmp_path / "missing.json", "cannot read flags file"),
    ]:
        res = invoke(["bandit", "train", str(db), "--metric", "reward", "--out", str(models_out),
                      "--flags", str(flags_in), "--out-flags", str(flags_out)])
        assert res.exit_code == 2 and says in res.text, res.text
        assert not models_out.exists() and not flags_out.exists()
    assert "string variation values: ['other']" in invoke(
        ["bandit", "train", str(db), "--metric", "reward", "--out", str(models_out),
         "--flags", str(other_key), "--out-flags", str(flags_out)]).text


def test_a_simulation_refuses_a_store_that_already_holds_events(tmp_path):
    db = tmp_path / "events.duckdb"
    args = ["bandit", "simulate", "--rounds", "2", "--subjects", "50", "--seed", "1", "--store", str(db)]
    first = invoke(args)
    assert first.exit_code == 0, first.text
    with EventStore(str(db)) as store:
        before = store.counts()
    # was: the second run trained round 1 on 150 events (100 of them the first run's), silently
    again = invoke(args)
    assert again.exit_code == 2
    assert (f"the store EventStore('{db}') already holds 100 bandit events, 100 outcome events; a simulation "
            "logs its own") in again.text
    with EventStore(str(db)) as store:
        assert store.counts() == before  # nothing written


def test_train_until_holds_later_decisions_out_for_evaluate_since(tmp_path):
    db, out = tmp_path / "events.duckdb", tmp_path / "candidate.json"
    with EventStore(str(db)) as store:
        simulate_bandit(make_environment(n_actions=3, seed=4), rounds=2, subjects_per_round=150, seed=3,
                        store=store)
        stamps = sorted(store.bandit_events()["timestamp"].unique())
    assert len(stamps) == 2  # one timestamp per simulated round
    cut = stamps[1].isoformat() + "Z"
    trained = invoke(["bandit", "train", str(db), "--metric", "reward", "--out", str(out), "--until", cut])
    assert trained.exit_code == 0 and "bandit 'bandit': 150 events" in trained.text, trained.text
    held_out = invoke(["bandit", "evaluate", str(db), "--metric", "reward", "--model", str(out), "--since", cut,
                       "--json"])
    assert held_out.exit_code == 0 and json.loads(held_out.output)["decisions"] == 150
    for until, says in [("2020-01-01T00:00:00Z", "no bandit decisions in "), ("yesterday", "--until 'yesterday'")]:
        res = invoke(["bandit", "train", str(db), "--metric", "reward", "--out", str(out), "--until", until])
        assert res.exit_code == 2 and says in res.text, res.text
