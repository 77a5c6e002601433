"""The demo and the analysis command, end to end in a small configuration."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, write_table

from sortition.workflows.demo import analyze, read_table, run_demo
from sortition.scenarios import generate
from sortition.serving import Client, Configuration
from sortition.store import EventStore


def test_demo_end_to_end(tmp_path):
    run = run_demo(rounds=2, visitors=400, draws=50, seed=3, out=tmp_path)
    sim = run.simulation
    assert [r.n for r in sim.rounds] == [400, 400]
    assert sim.experiment.round_ == 2 and len(sim.experiment.plans_) == 3
    # every visitor was served through the Client and logged; every served plan was versioned
    with EventStore(str(run.store)) as store:
        counts = store.counts()
        assert counts["assignment"] == 800 and counts["configuration"] == 2
        assert store.configuration(2).flags == sim.configurations[1]
        frame = store.experiment_frame(sim.experiment.key, "outcome")
    assert len(frame) == 800 and frame["propensity"].between(0, 1, inclusive="right").all()
    assert set(frame["cell"]) <= {"control", "explore", "optimized"}
    # the report: five plots embedded, a servable next configuration, a summary with regret
    html = run.report.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 5
    config = json.loads((tmp_path / "configuration.json").read_text())
    client = Client(Configuration.from_json(config))
    assert client.get_assignment(sim.experiment.key, "someone", {"device": "mobile"}, "none") in sim.arms
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["regret"]["loop"] == pytest.approx(sim.regret)
    assert summary["visitors"] == 800
    assert sim.uniform_regret > 0 and np.isfinite(sim.regret)
    assert 0 <= sim.segment_accuracy <= 1


def test_analyze_the_demo_event_store(tmp_path):
    run = run_demo(rounds=2, visitors=300, engine="stratified", seed=4, out=tmp_path / "demo")
    result = invoke(["analyze", str(run.store), "--flag", run.simulation.experiment.key,
                                      "--kind", "revenue", "--control", "control", "--engine", "stratified",
                                      "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.text
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["visitors"] == 600 and summary["arms"] == ["control", "bundle", "free_shipping"]  # sorted after control
    bad = invoke(["analyze", str(run.store), "--flag", "no-such-flag", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "no exposures" in bad.text


def test_demo_command(tmp_path):
    result = invoke(["demo", "--rounds", "2", "--visitors", "200", "--engine", "stratified", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.text
    text = result.text
    assert "Regret vs oracle" in text and "uniform A/B test" in text
    assert (tmp_path / "index.html").exists()
    # each round line counts its segments in words that agree with the count
    counts = [int(n) for n, word in re.findall(r"; (\d+) (segments?): ", text)
              if (word == "segment") == (n == "1")]
    assert len(counts) == 2, text


@pytest.mark.parametrize("suffix", ["csv", "parquet", "duckdb"])
def test_analyze_reads_user_data(tmp_path, suffix):
    data, _ = generate("reversal", 600, arms=3, seed=4)
    frame = data.frame()
    path = tmp_path / f"data.{suffix}"
    write_table(frame, path)
    loaded = read_table(path)
    experiment, report = analyze(
        loaded, arm="arm", outcome="y", subject="visitor_id", propensity="propensity", control="control",
        outcome_kind="continuous", engine="stratified", out=tmp_path / "out",
    )
    assert report.exists() and experiment.round_ == 1
    assert experiment.arms[0] == "control"
    assert len(experiment.results_[-1].segments) >= 1


def test_analyze_command_and_errors(tmp_path):
    data, _ = generate("two_segments", 400, arms=2, seed=5)
    path = tmp_path / "d.csv"
    data.frame().to_csv(path, index=False)
    ok = invoke(["analyze", str(path), "--subject", "visitor_id", "--propensity", "propensity",
                                  "--control", "control", "--kind", "continuous", "--engine", "stratified", "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.text
    assert (tmp_path / "o" / "configuration.json").exists()
    bad = invoke(["analyze", str(path), "--outcome", "revenue_typo", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "revenue_typo" in bad.text
    missing = invoke(["analyze", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "does not exist" in missing.text
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.tsv, \.parquet or \.duckdb"):
        read_table(tmp_path / "d.json")


def test_analyze_prints_arm_names_literally(tmp_path):
    """An arm name that looks like rich markup is printed as itself (and cannot crash the console)."""
    data, _ = generate("two_segments", 400, arms=2, seed=5)
    frame = data.frame()
    treated = "[/evil] <b>"
    frame["arm"] = frame["arm"].where(frame["arm"] == "control", treated)
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    res = invoke(["analyze", str(path), "--subject", "visitor_id", "--propensity", "propensity", "--kind",
                  "continuous", "--control", "control", "--engine", "stratified", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "Average lift vs control" in res.text and f"{treated} " in res.text


def test_the_demo_replaces_only_a_demos_own_store(tmp_path):
    from sortition.learning.environment import make_environment
    from sortition.learning.simulate import simulate_bandit
    from sortition.store.publishing import create_key

    first = run_demo(rounds=1, visitors=100, engine="stratified", seed=1, out=tmp_path / "d")
    again = run_demo(rounds=1, visitors=100, engine="stratified", seed=2, out=tmp_path / "d")  # its own: replaced
    with EventStore(str(again.store)) as store:
        assert store.counts()["assignment"] == 100 and first.store == again.store
    # was deleted without a word: a user's own events.duckdb in --out, or a store a server holds
    for folder, fill, says in [
        ("bandits", lambda s: simulate_bandit(make_environment(n_actions=2, seed=1), rounds=1,
                                              subjects_per_round=20, seed=1, store=s),
         "holds events of flags 'bandit-flag': it is not a demo's store"),
        ("keys", lambda s: create_key(s, "sdk"), "holds 1 API key: it is not a demo's store"),
    ]:
        path = tmp_path / folder / "events.duckdb"
        path.parent.mkdir()
        with EventStore(str(path)) as store:
            fill(store)
        before = path.read_bytes()
        with pytest.raises(ValueError, match=f"events.duckdb {says}, and the demo would delete it"):
            run_demo(rounds=1, visitors=100, engine="stratified", out=path.parent)
        assert path.read_bytes() == before
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "events.duckdb").write_text("my notes")
    with pytest.raises(ValueError, match="cannot be read as a demo's event store"):
        run_demo(rounds=1, visitors=100, engine="stratified", out=tmp_path / "junk")
    assert (tmp_path / "junk" / "events.duckdb").read_text() == "my notes"
