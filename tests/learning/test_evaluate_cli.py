"""`sortition bandit evaluate`: off-policy estimates of a candidate model or flag from a store,
checked against the candidate's true value in a simulated environment."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pytest
from cli_helpers import invoke

from sortition.learning import bandit_models_json, train_bandit
from sortition.learning.environment import make_environment, policy_probabilities
from sortition.learning.events import BanditEvents
from sortition.learning.simulate import REWARD_METRIC, simulate_bandit
from sortition.store import EventStore

NUM = r"(-?\d+\.\d+)"
ROW = re.compile(rf"(\w[\w ]*?) +│ +{NUM} +│ +\[{NUM}, +{NUM}\] +│ +{NUM} +│ +(\d+(?:\.\d)?)")


def _rows(output: str) -> dict[str, tuple[float, float, float, float]]:
    """estimator -> (value, lower, upper, ESS) from the printed table."""
    out = {}
    for line in output.splitlines():
        m = ROW.search(line)
        if m:
            name, value, lo, hi, _se, ess = m.groups()
            out[name.strip()] = (float(value), float(lo), float(hi), float(ess))
    return out


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A store filled by the closed loop (cold start, then learned models), and its environment."""
    env = make_environment(n_actions=3, seed=11, noise_sd=0.5)
    path = str(tmp_path_factory.mktemp("sim") / "sim.duckdb")
    # fixed decision times (one per round, as a batch call shares one): derived event ids, hence the
    # stored order and the reward model's cross-fitting folds, are then the same on every run
    stamps = iter(f"2024-05-0{d}T12:00:00Z" for d in range(1, 10))
    with EventStore(path) as store, pytest.MonkeyPatch.context() as patch:
        patch.setattr("sortition.serving.client.now_rfc3339", lambda: next(stamps))
        simulate_bandit(env, rounds=3, subjects_per_round=600, seed=4, store=store)
        frame = store.bandit_rewards(REWARD_METRIC)
    contexts = env.sample_contexts(20_000, np.random.default_rng(99))  # the population, for the truth
    return env, path, frame, contexts, env.expected_rewards(contexts)


def test_dr_interval_contains_the_candidates_true_value(simulated, tmp_path):
    env, path, frame, contexts, q = simulated
    # a candidate that differs from every logger: a fixed, fairly greedy gamma
    candidate = train_bandit(BanditEvents.from_frame(frame), gamma=8.0, action_probability_floor=0.1)
    models = tmp_path / "candidate.json"
    models.write_text(json.dumps(bandit_models_json([candidate])))
    truth = float((policy_probabilities(candidate, contexts, env.offered()) * q).sum(axis=1).mean())

    res = invoke(["bandit", "evaluate", path, "--metric", REWARD_METRIC,
                                   "--model", str(models), "--estimator", "all"])
    assert res.exit_code == 0, res.text
    rows = _rows(res.output)
    assert set(rows) == {"IPS", "SNIPS", "DM", "DR", "mean reward"}, res.text
    value, lo, hi, ess = rows["DR"]
    assert lo <= truth <= hi, (truth, rows["DR"])
    assert 0.2 * len(frame) < ess < len(frame)
    # the logging policy's value is the logged mean reward, and the candidate beats it here
    assert rows["mean reward"][0] == pytest.approx(frame["reward"].mean(), abs=1e-4)
    assert truth > frame["reward"].mean() and value > rows["mean reward"][0]
    assert "overlap warning" not in res.text

    boot = invoke(["bandit", "evaluate", path, "--metric", REWARD_METRIC,
                                    "--model", str(models), "--interval", "bootstrap"])
    assert boot.exit_code == 0, boot.text
    b_value, b_lo, b_hi, _ = _rows(boot.output)["DR"]
    assert b_value == value and (b_lo, b_hi) != (lo, hi) and b_lo <= truth <= b_hi


def _flags(variations: list[str], splits: list[tuple[str, int, int]]) -> dict:
    """A flag 'pick' whose variations are actions, split by shard ranges."""
    return {"flags": {"pick": {
        "key": "pick", "enabled": True, "variationType": "STRING", "totalShards": 10000,
        "variations": {v: {"key": v, "value": v} for v in variations},
        "allocations": [{"key": "all", "rules": [], "doLog": True, "splits": [
            {"variationKey": v, "shards": [{"salt": "s", "ranges": [{"start": a, "end": b}]}]}
            for v, a, b in splits]}],
    }}}


def test_a_candidate_flag_is_evaluated_and_a_poorly_covered_one_warns(simulated, tmp_path):
    env, path, frame, contexts, q = simulated
    # 30% action_0, 70% action_2 for everyone
    flags = tmp_path / "flags.json"
    split = [("action_0", 0, 3000), ("action_2", 3000, 10000)]
    flags.write_text(json.dumps(_flags(["action_0", "action_2"], split)))
    truth = float((0.3 * q[:, 0] + 0.7 * q[:, 2]).mean())
    args = ["bandit", "evaluate", path, "--metric", REWARD_METRIC, "--flags", str(flags), "--candidate-flag", "pick"]
    res = invoke([*args, "--estimator", "all"])
    assert res.exit_code == 0, res.text
    rows = _rows(res.output)
    assert rows["IPS"][1] <= truth <= rows["IPS"][2], (truth, rows)
    assert rows["DR"][1] <= truth <= rows["DR"][2], (truth, rows)

    # always the action the learned loggers avoid: few logged events support it
    worst = int(np.argmin(q.mean(axis=0)))
    key = env.action_keys[worst]
    flags.write_text(json.dumps(_flags([key], [(key, 0, 10000)])))
    res = invoke([*args, "--estimator", "ips"])
    assert res.exit_code == 0, res.text
    assert "overlap warning" in res.text and "effective sample size" in res.text
    assert _rows(res.output)["IPS"][3] < 0.05 * len(frame)


def test_decisions_without_offered_actions_give_a_clear_error(tmp_path):
    from sortition.learning import bandit_flags_json
    from sortition.serving import Client, Configuration
    from sortition.store import StoreLogger

    env = make_environment(n_actions=3, seed=2)
    model = train_bandit(env.log_events(400, seed=1)[0], gamma=4.0)
    models = tmp_path / "m.json"
    models.write_text(json.dumps(bandit_models_json([model])))
    path = str(tmp_path / "old.duckdb")
    config = Configuration.from_json(bandit_flags_json(model, "f"), bandit_models_json([model]))
    with EventStore(path) as store:
        for offered, prefix in ((False, "old"), (True, "new")):
            with StoreLogger(store) as logger:
                client = Client(config, bandit_logger=logger, log_offered_actions=offered)
                for i in range(50):
                    client.get_bandit_action("f", f"{prefix}{i}", {"age": 30 + i}, env.offered(), "none")
            later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)  # after every decision
            store.append_outcomes([{"subject": f"{prefix}{i}", "metric": "m", "value": 1.0,
                                    "timestamp": later} for i in range(50)])
        last_old = store.bandit_events().query("subject.str.startswith('old')")["timestamp"].max()

    res = invoke(["bandit", "evaluate", path, "--metric", "m", "--model", str(models)])
    assert res.exit_code == 2
    text = res.text
    assert "50 of 100 decisions" in text and "without their offered actions" in text and "--since" in text
    since = re.search(r"--since (\S+)", text).group(1)
    assert since > last_old.isoformat()
    ok = invoke(["bandit", "evaluate", path, "--metric", "m", "--model", str(models),
                                  "--since", since])
    assert ok.exit_code == 0, ok.text
    assert "50 decisions" in ok.text and _rows(ok.output)["DR"][0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give one candidate"),
        (["--model", "m.json", "--flags", "f.json", "--candidate-flag", "pick"], "give one candidate"),
        (["--flags", "f.json"], "needs --candidate-flag"),
        (["--model", "m.json", "--candidate-flag", "pick"], "--candidate-flag goes with --flags"),
        (["--model", "m.json", "--estimator", "best"], "'best' is not one of 'dr', 'ips', 'snips', 'dm', 'all'"),
        (["--model", "m.json", "--interval", "wide"], "'wide' is not one of 'normal', 'bootstrap'"),
        (["--model", "m.json", "--window", "7 days"], "is not a duration"),
        (["--model", "m.json", "--bandit", "nope"], "bandit 'nope' is not in"),
        (["--model", "missing.json"], "cannot read models file"),
        (["--flags", "f.json", "--candidate-flag", "other"], "flag 'other' is not in"),
        (["--flags", "f.json", "--candidate-flag", "Pick"], "(did you mean 'pick'?); its flags: 'pick'"),
        (["--model", "f.json"], "f.json is not a bandit-models-v1 file: it is a flags (UFC) file"),
        (["--model", "m.json", "--window", "0d"], "'0d' is no time at all"),
        (["--model", "m.json", "--flag", "other-flag"], "flag 'other-flag' has no bandit decisions"),
        (["--model", "m.json", "--metric", "rewrd"], "metric 'rewrd' has no outcome events"),
    ],
)
def test_errors_say_what_to_fix(simulated, tmp_path, monkeypatch, args, message):
    _env, path, frame, _c, _q = simulated
    monkeypatch.chdir(tmp_path)
    model = train_bandit(BanditEvents.from_frame(frame.head(300)), gamma=1.0)
    (tmp_path / "m.json").write_text(json.dumps(bandit_models_json([model])))
    (tmp_path / "f.json").write_text(json.dumps(_flags(["action_0"], [("action_0", 0, 10000)])))
    res = invoke(["bandit", "evaluate", path, "--metric", REWARD_METRIC, *args])
    assert res.exit_code == 2, res.text
    assert message in res.text


def test_json_output_matches_the_table(simulated, tmp_path):
    env, path, frame, _, _ = simulated
    candidate = train_bandit(BanditEvents.from_frame(frame), gamma=8.0, action_probability_floor=0.1)
    models = tmp_path / "candidate.json"
    models.write_text(json.dumps(bandit_models_json([candidate])))
    args = ["bandit", "evaluate", path, "--metric", REWARD_METRIC, "--model", str(models),
            "--estimator", "all"]
    table = _rows(invoke(args).output)
    res = invoke([*args, "--json"])
    assert res.exit_code == 0, res.text
    doc = json.loads(res.output)  # the whole output is one JSON document
    assert doc["decisions"] == len(frame) and doc["metric"] == REWARD_METRIC
    by_name = {e["estimator"]: e for e in doc["estimates"]}
    assert set(by_name) == {"IPS", "SNIPS", "DM", "DR"}
    rows = {name.split()[-1]: v for name, v in table.items()}  # "candidate DR" -> "DR"
    for name, entry in by_name.items():
        value, lower, upper, _ = rows[name]
        got = (entry["value"], entry["lower"], entry["upper"])
        assert got == pytest.approx((value, lower, upper), abs=1e-4)
    assert doc["logging"]["estimator"] == "mean reward" and doc["logging"]["n"] == len(frame)
