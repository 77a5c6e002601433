"""Saving and reloading a SequentialExperiment, and the one-round-per-run CLI (`sortition round`)."""

import json
import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from store.conftest import _postgres_schemas, store_url  # noqa: F401  (DuckDB + PostgreSQL store fixture)
from cli_helpers import invoke

from sortition.experiment import SequentialExperiment, load_experiment, plan_to_flag, uniform_plan
from sortition.experiment import loop_policy
from sortition.workflows.daily import _new_rows
from sortition.experiment.simulation import visitor_attributes
from sortition.scenarios import make_scenario
from sortition.serving import Client, Configuration
from sortition.store import EventStore, StoreLogger

from .conftest import draw_round

FIT = {"progress": False, "draws": 100}


def _experiment(**kw):
    scenario = make_scenario("multi_winner", 4)
    opts = {"key": "checkout", "outcome": "continuous", "engine": "stratified", "fit_options": FIT, "seed": 3}
    opts.update(kw)
    return scenario, SequentialExperiment(scenario.arms, **opts)


def test_round_trip_and_same_next_plan_after_reload(tmp_path):
    scenario, exp = _experiment(schedule=[500, 500, 500], covariates=None, min_control_weight=0.1)
    path = tmp_path / "state.json"
    # round 0: nothing learned yet
    fresh = SequentialExperiment.load(exp.save(path))
    assert fresh.to_json() == exp.to_json()
    assert fresh.plan_ == exp.plan_ and fresh.data_ is None

    rng = np.random.default_rng(0)
    rows, _ = draw_round(exp.plan_, scenario, 500, rng, 0)
    exp.advance(rows)
    exp.save(path)
    loaded = SequentialExperiment.load(path)

    assert loaded.round_ == exp.round_ == 1
    assert loaded.results_ == exp.results_  # lifts, segments (rules), cells, plan: exact floats
    assert loaded.plans_ == exp.plans_
    assert loaded.active_arms_ == exp.active_arms_
    assert loaded.schedule == exp.schedule and loaded.weights == exp.weights and loaded.seed == exp.seed
    pd.testing.assert_frame_equal(loaded.data_, exp.data_)  # values and dtypes
    assert loaded.posterior_ is None  # refit by the next round, not stored
    assert loaded.configuration(created_at="t") == exp.configuration(created_at="t")

    # the next round from the same data: the same result and the same next configuration
    rows, _ = draw_round(exp.plan_, scenario, 500, rng, 1)
    a, b = exp.advance(rows), loaded.advance(rows)
    assert a == b
    assert loaded.configuration(created_at="t") == exp.configuration(created_at="t")
    assert _same_but_seconds(exp, loaded)  # the whole saved state, timings aside


def _same_but_seconds(a, b):
    da, db = a.to_json()["state"], b.to_json()["state"]
    for d in (da, db):
        for r in d["results"]:
            r.pop("seconds")
    return da == db


def test_streaks_nan_and_mixed_columns_round_trip(tmp_path):
    _, exp = _experiment()
    data = pd.DataFrame(
        {
            "subject": ["a", "b", "c"],
            "outcome": [1.5, float("nan"), float("inf")],
            "n": np.array([1, 2, 3], dtype="int64"),
            "flag_on": [True, False, True],
            "maybe": pd.array([1, None, 3], dtype="Int64"),
            "mixed": ["x", None, 2.5],
            "cat": pd.Categorical(["u", "v", "u"]),
        }
    )
    exp._state = replace(
        exp._state,
        data=data,
        loser_streak={"arm_1": 1},
        winner_streak={("channel ONE_OF {search}", "arm_2"): 2},
    )
    loaded = load_experiment(exp.save(tmp_path / "s.json"))
    pd.testing.assert_frame_equal(loaded.data_, data)
    assert loaded._state.loser_streak == {"arm_1": 1}
    assert loaded._state.winner_streak == {("channel ONE_OF {search}", "arm_2"): 2}
    json.loads((tmp_path / "s.json").read_text())  # strict JSON: no NaN/Infinity tokens


def test_unknown_version_and_foreign_files_are_refused(tmp_path):
    _, exp = _experiment()
    path = exp.save(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        SequentialExperiment.load(path)
    path.write_text(json.dumps({"flags": {}}))
    with pytest.raises(ValueError, match="not a Sortition experiment state"):
        SequentialExperiment.load(path)
    with pytest.raises(ValueError, match="does not exist"):
        SequentialExperiment.load(tmp_path / "missing.json")


def test_crash_during_save_leaves_the_old_file(tmp_path, monkeypatch):
    scenario, exp = _experiment()
    path = exp.save(tmp_path / "s.json")
    before = path.read_bytes()
    rows, _ = draw_round(exp.plan_, scenario, 300, np.random.default_rng(1), 0)
    exp.advance(rows)

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        exp.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no temp file left behind


# --- the CLI: one round per run ------------------------------------------------------------------------
FLAG, METRIC = "checkout", "outcome"


def _serve(store_path, scenario, n, round_index, rng):
    """Serve n visitors the store's latest configuration through the Client; log assignments, outcomes."""
    with EventStore(str(store_path)) as store:
        config = store.configuration().flags
        logger = StoreLogger(store, buffer_size=n + 1)
        client = Client(Configuration.from_json(config), assignment_logger=logger)
        visitors = scenario.sample_visitors(n, rng)
        subjects = [f"d{round_index}-{i:05d}" for i in range(n)]
        arms = [
            client.get_assignment(FLAG, s, attrs, scenario.arms[0])
            for s, attrs in zip(subjects, visitor_attributes(visitors), strict=True)
        ]
        logger.flush()
        y = scenario.sample_outcomes(visitors, np.array([scenario.arms.index(a) for a in arms]), rng)
        now = pd.Timestamp.now(tz="UTC").to_pydatetime()
        store.append_outcomes(
            [
                {"subject": s, "metric": METRIC, "value": float(v), "timestamp": now}
                for s, v in zip(subjects, y, strict=True)
            ]
        )


def _cli(store_path, tmp_path, *extra):
    args = [
        "round",
        str(store_path),
        "--flag",
        FLAG,
        "--metric",
        METRIC,
        "--kind",
        "continuous",
        "--state",
        str(tmp_path / "state.json"),
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]
    return invoke(args)


def test_cli_round_per_run_matches_an_in_process_experiment(tmp_path, monkeypatch):
    scenario = make_scenario("multi_winner", 4)
    store_path = tmp_path / "events.duckdb"
    EventStore(str(store_path)).close()
    arms = ",".join(scenario.arms)
    state = tmp_path / "state.json"
    rng = np.random.default_rng(5)

    # day 0: create; nothing served yet, so the round-0 configuration goes to the store
    res = _cli(store_path, tmp_path, "--arms", arms, "--engine", "stratified", "--seed", "4")
    assert res.exit_code == 0, res.text
    assert "No exposures yet" in res.text and state.exists()
    reference = SequentialExperiment(
        scenario.arms, key=FLAG, outcome="continuous", engine="stratified", fit_options=FIT, seed=4
    )
    with EventStore(str(store_path)) as store:
        assert store.configuration_versions() == [1]
        assert store.configuration().flags["flags"] == reference.configuration()["flags"]

    for day in range(2):
        _serve(store_path, scenario, 400, day, rng)
        res = _cli(store_path, tmp_path)
        assert res.exit_code == 0, res.text
        assert f"Round {day + 1}: read 400 new exposures" in res.text
        with EventStore(str(store_path)) as store:
            frame = store.experiment_frame(FLAG, METRIC)
        reference.advance(_new_rows(frame, reference, FLAG))

    # two runs in separate invocations (state reloaded in between) == two rounds in one process
    loaded = SequentialExperiment.load(state)
    assert loaded.round_ == 2 and loaded.plans_ == reference.plans_ and loaded.results_ == reference.results_
    with EventStore(str(store_path)) as store:
        assert store.configuration_versions() == [1, 2, 3]
        assert store.configuration().flags["flags"] == reference.configuration()["flags"]
    assert (tmp_path / "out" / "index.html").exists()

    # no new data: a clear error, nothing saved
    before = state.read_bytes()
    res = _cli(store_path, tmp_path)
    assert res.exit_code == 2 and "no new exposures" in res.text
    res = _cli(store_path, tmp_path, "--arms", "control,x,y")
    assert res.exit_code == 2 and "arms mismatch" in res.text
    assert state.read_bytes() == before
    res = invoke([
            "round",
            str(store_path),
            "--flag",
            "nope",
            "--metric",
            METRIC,
            "--state",
            str(tmp_path / "other.json"),
            "--arms",
            arms,
            "--kind",
            "revenue",
        ],
    )
    assert res.exit_code == 0  # a new flag's first run: nothing to read yet, round-0 config saved
    res = invoke([
            "round",
            str(store_path),
            "--flag",
            "nope",
            "--metric",
            METRIC,
            "--state",
            str(tmp_path / "other.json"),
        ],
    )
    assert res.exit_code == 2 and "no exposures to flag 'nope'" in res.text and FLAG in res.text

    # a round that fails mid-way leaves the state file and the store's configurations as they were
    _serve(store_path, scenario, 300, 2, rng)
    before = state.read_bytes()
    with EventStore(str(store_path)) as store:
        versions = store.configuration_versions()

    def boom(*a, **k):
        raise RuntimeError("fit failed")

    monkeypatch.setattr(loop_policy, "DEFAULT_POLICY", replace(loop_policy.DEFAULT_POLICY, fit=boom))
    res = _cli(store_path, tmp_path)
    assert res.exit_code == 1 and "error: RuntimeError: fit failed (set SORTITION_DEBUG=1" in res.text
    assert state.read_bytes() == before
    with EventStore(str(store_path)) as store:
        assert store.configuration_versions() == versions
    monkeypatch.undo()
    res = _cli(store_path, tmp_path)  # the retry reads the same new rows
    assert res.exit_code == 0 and "Round 3: read 300 new exposures" in res.text


def test_cli_first_run_needs_arms_and_later_runs_need_the_store(tmp_path):
    store_path = tmp_path / "events.duckdb"
    res = _cli(store_path, tmp_path)
    assert res.exit_code == 2 and "start one with --arms" in res.text
    assert not (tmp_path / "state.json").exists() and not store_path.exists()
    res = _cli(store_path, tmp_path, "--arms", "control,treat", "--kind", "sales")
    assert res.exit_code == 2 and "'sales' is not one of" in res.text
    res = _cli(store_path, tmp_path, "--arms", "control,treat", "--engine", "stratified")
    assert res.exit_code == 0, res.text  # the first run creates the store and saves the round-0 config
    with EventStore(str(store_path)) as store:
        assert store.configuration_versions() == [1]
    res = _cli(tmp_path / "missing.duckdb", tmp_path)
    assert res.exit_code == 2 and "does not exist" in res.text
    (tmp_path / "state.json").write_text("{}")
    res = _cli(store_path, tmp_path)
    assert res.exit_code == 2 and "not a Sortition experiment state" in res.text


def test_daily_round_on_duckdb_and_postgres(store_url, tmp_path):  # noqa: F811  (the imported fixture)
    """The daily flow against both store backends: create, serve, advance, keep other flags."""
    from sortition.workflows.daily import daily_round

    scenario = make_scenario("multi_winner", 4)
    with EventStore(store_url) as store:
        other = plan_to_flag(uniform_plan(("off", "on")), "other-flag")
        store.save_configuration({"flags": {"other-flag": other}})
    first = daily_round(
        store_url,
        FLAG,
        METRIC,
        state=tmp_path / "s.json",
        outcome="continuous",
        arms=scenario.arms,
        engine="stratified",
        draws=100,
    )
    assert first.created and first.result is None and first.configuration_version == 2
    with EventStore(store_url) as store:
        flags = store.configuration().flags["flags"]
        assert set(flags) == {"other-flag", FLAG} and flags["other-flag"] == other  # other flags are kept
        config = store.configuration().flags
        logger = StoreLogger(store, buffer_size=1000)
        client = Client(Configuration.from_json(config), assignment_logger=logger)
        visitors = scenario.sample_visitors(300, np.random.default_rng(2))
        subjects = [f"p{i}" for i in range(300)]
        arms = [
            client.get_assignment(FLAG, s, a, "control")
            for s, a in zip(subjects, visitor_attributes(visitors), strict=True)
        ]
        logger.flush()
        y = scenario.sample_outcomes(
            visitors, np.array([scenario.arms.index(a) for a in arms]), np.random.default_rng(3)
        )
        now = pd.Timestamp.now(tz="UTC").to_pydatetime()
        store.append_outcomes(
            [
                {"subject": s, "metric": METRIC, "value": float(v), "timestamp": now}
                for s, v in zip(subjects, y, strict=True)
            ]
        )
    second = daily_round(store_url, FLAG, METRIC, state=tmp_path / "s.json")
    assert second.n_new == 300 and second.result.n_total == 300 and second.configuration_version == 3
    assert SequentialExperiment.load(tmp_path / "s.json").plans_ == second.experiment.plans_
    with EventStore(store_url) as store:
        assert store.configuration().flags["flags"][FLAG] == second.experiment.configuration()["flags"][FLAG]


@pytest.mark.parametrize("columns", [40, 80, 250])
def test_cli_errors_never_wrap_at_any_terminal_width(tmp_path, columns):
    """A long path in an error message stays on one line however narrow the terminal is."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "state.json"
    res = invoke(["round", str(tmp_path / "events.duckdb"), "--flag", FLAG, "--metric", METRIC,
                  "--state", str(deep), "--out", str(tmp_path / "out")], columns=columns)
    assert res.exit_code == 2
    error_lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(deep) in error_lines[0] and "start one with --arms" in error_lines[0]


def test_shard_layouts_are_saved_and_older_states_load_with_the_contiguous_layout(tmp_path):
    from sortition.experiment.persistence import write_state

    scenario, exp = _experiment()
    rng = np.random.default_rng(0)
    for r in range(2):
        exp.advance(draw_round(exp.plan_, scenario, 400, rng, r)[0])
    assert exp.plan_.segments[0].shards is not None
    path = exp.save(tmp_path / "s.json")
    assert SequentialExperiment.load(path).plans_ == exp.plans_
    doc = json.loads(path.read_text())
    del doc["checksum"]
    # a version-2 file (no layouts): it was served the contiguous layout, and loads with it
    old = json.loads(json.dumps(doc))
    old["version"] = 2
    for plan in old["state"]["plans"]:
        for seg in (*plan["segments"], plan["default"]):
            del seg["shards"]
    plans = SequentialExperiment.load(write_state(old, tmp_path / "v2.json")).plans_
    assert all(seg.shards is None for p in plans for seg in (*p.segments, p.default))
    assert [p.segments for p in plans] != [p.segments for p in exp.plans_]
    # an edited layout: refused, naming the segment
    seg = doc["state"]["plans"][-1]["segments"][0]
    seg["shards"][0][2][0][1] -= 1
    with pytest.raises(ValueError, match=f"segment {seg['id']!r}: its shard ranges do not tile"):
        SequentialExperiment.load(write_state(doc, tmp_path / "edited.json"))
