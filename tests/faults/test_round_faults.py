"""``sortition round`` is all-or-nothing, and a damaged state file never runs (issue 13 §4, §5).

A round commits by writing the state (atomically), then publishes its configuration. Killed anywhere
(a hook that raises at each step, or SIGKILL at random moments of a real ``sortition round`` process),
the store's versions and the state agree, no ``.tmp`` file is left, and the next run completes the
round: every round's plan is published exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sortition.experiment import SequentialExperiment
from sortition.experiment import persistence
from sortition.experiment.simulation import visitor_attributes
from sortition.scenarios import make_scenario
from sortition.serving import Client, Configuration
from sortition.store import EventStore, StoreLogger
from sortition.workflows import daily
from sortition.workflows.daily import daily_round, plan_rounds

FLAG, METRIC = "checkout", "outcome"
SCENARIO = make_scenario("multi_winner", 3)


def _serve(store_path: Path, n: int, tag: str, rng: np.random.Generator) -> None:
    """n visitors served the store's latest configuration, their assignments and outcomes logged."""
    with EventStore(str(store_path)) as store:
        logger = StoreLogger(store, buffer_size=n + 1, background=False)
        client = Client(Configuration.from_json(store.configuration().flags), assignment_logger=logger)
        visitors = SCENARIO.sample_visitors(n, rng)
        subjects = [f"{tag}-{i:05d}" for i in range(n)]
        arms = [client.get_assignment(FLAG, s, a, SCENARIO.arms[0])
                for s, a in zip(subjects, visitor_attributes(visitors), strict=True)]
        logger.close()
        y = SCENARIO.sample_outcomes(visitors, np.array([SCENARIO.arms.index(a) for a in arms]), rng)
        now = pd.Timestamp.now(tz="UTC").to_pydatetime()
        store.append_outcomes([{"subject": s, "metric": METRIC, "value": float(v), "timestamp": now}
                               for s, v in zip(subjects, y, strict=True)])


def _flag_of(experiment: SequentialExperiment, plan_index: int = -1) -> dict:
    from sortition.experiment import plan_to_flag
    from sortition.experiment.export import experiment_salt

    plan = experiment.plans_[plan_index]
    return json.loads(json.dumps(plan_to_flag(plan, FLAG, salt=experiment_salt(FLAG))))


def _assert_agree(store_path: Path, state: Path, *, completed: bool) -> SequentialExperiment:
    """The store's versions and the state agree; ``completed``: the state's plan is the one served."""
    experiment = SequentialExperiment.load(state)
    with EventStore(str(store_path), shared=True) as store:
        entries = [store.configuration(v).flags["flags"][FLAG] for v in store.configuration_versions()]
    published = [min(plan_rounds(e)) for e in entries]
    assert published == sorted(set(published)), f"a round's plan was published twice: {published}"
    assert published[-1] <= experiment.round_, "a plan the state never committed is served"
    if entries[-1] != _flag_of(experiment):  # committed, not yet published: the last run was killed there
        assert not completed and entries[-1] == _flag_of(experiment, -2)
    assert not list(state.parent.glob("*.tmp")), "a temporary file was left behind"
    return experiment


def _round(store_path: Path, tmp_path: Path, **kw):
    return daily_round(store_path, FLAG, METRIC, state=tmp_path / "state.json", out=tmp_path / "out", **kw)


def _create(store_path: Path, state: Path) -> None:
    """A new experiment: its state written, then published by a run (as after a kill between the two).

    A small, quick policy tree: the fits are not at stake here, the order of the writes is."""
    SequentialExperiment(SCENARIO.arms, key=FLAG, outcome="continuous", engine="stratified", seed=1,
                         fit_options={"progress": False, "draws": 50}, max_depth=1,
                         tree_options={"n_bootstrap": 2}).save(state)
    EventStore(str(store_path)).close()
    run = daily_round(store_path, FLAG, METRIC, state=state)
    assert run.recovered and run.configuration_version == 1 and run.result is None
    _assert_agree(store_path, state, completed=True)


KILL_POINTS = {
    "before-the-state-is-written": (persistence, "write_state"),
    "at-the-state-rename": (persistence.os, "replace"),
    "after-the-commit-before-publishing": (daily, "_save_configuration"),
    "while-publishing": (EventStore, "save_configuration"),
    "after-publishing-before-the-report": (daily, "_write_report"),
}


def test_a_round_killed_at_each_step_leaves_agreeing_state_and_the_rerun_completes(tmp_path, monkeypatch):
    import sortition.report

    store_path, state = tmp_path / "events.duckdb", tmp_path / "state.json"
    # the report's content is not at stake here; a stub keeps the test fast
    monkeypatch.setattr(sortition.report, "write_report", lambda out, *a, **k: Path(out))
    rng = np.random.default_rng(0)
    _create(store_path, state)
    for i, (point, (owner, name)) in enumerate(KILL_POINTS.items()):
        _serve(store_path, 300, f"r{i}", rng)
        before = SequentialExperiment.load(state).round_

        def killed(*args, **kwargs):
            raise KeyboardInterrupt(f"killed {point}")  # like a signal: not an Exception

        with monkeypatch.context() as patch:
            patch.setattr(owner, name, killed)
            with pytest.raises(KeyboardInterrupt):
                _round(store_path, tmp_path)
        _assert_agree(store_path, state, completed=False)
        if point == "after-publishing-before-the-report":  # the round was whole: nothing left to redo
            with pytest.raises(ValueError, match="no new exposures"):
                _round(store_path, tmp_path)
        else:
            run = _round(store_path, tmp_path)  # the rerun completes the round, once
            assert run.recovered == (point in ("after-the-commit-before-publishing", "while-publishing"))
        experiment = _assert_agree(store_path, state, completed=True)
        assert experiment.round_ == before + 1, point


def test_sigkill_at_random_moments_of_sortition_round(tmp_path):
    store_path, state = tmp_path / "events.duckdb", tmp_path / "state.json"
    rng = np.random.default_rng(7)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(daily.__file__).parents[2])}
    cmd = [sys.executable, "-m", "sortition", "round", str(store_path), "--flag", FLAG, "--metric", METRIC,
           "--state", str(state)]  # no --out: the report is not at stake, and costs seconds

    def run(extra=(), kill_after=None):
        t0 = time.monotonic()
        proc = subprocess.Popen([*cmd, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
        return proc.returncode, out.decode(errors="replace"), time.monotonic() - t0

    _create(store_path, state)
    _serve(store_path, 300, "warm", rng)
    code, out, full = run()  # one whole round: how long the kills are spread over
    assert code == 0, out
    kills = 0
    for i, fraction in enumerate(np.random.default_rng(11).uniform(0.1, 0.9, size=3)):
        _serve(store_path, 200, f"k{i}", rng)
        before = SequentialExperiment.load(state).round_
        code, out, _ = run(kill_after=fraction * full)
        kills += code == -signal.SIGKILL
        _assert_agree(store_path, state, completed=False)
        code, out, _ = run()
        if code != 0:  # the killed run had finished the round: nothing new to read
            assert "no new exposures" in out, out
        experiment = _assert_agree(store_path, state, completed=True)
        assert experiment.round_ == before + 1
    assert kills >= 1  # runs were really killed midway (how many depends on the machine)
