"""Every guard, run the way a user runs the CLI: the exit code, the message, and the store and state
files byte-for-byte unchanged (nothing created either)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, write_table

from sortition.experiment.simulation import visitor_attributes
from sortition.scenarios import make_scenario
from sortition.serving import Client, Configuration
from sortition.store import EventStore, StoreLogger

FLAG, METRIC = "checkout", "revenue"


class _DropSome:
    """An assignment logger that loses a share of one arm's events (a broken logging path)."""

    def __init__(self, inner, arm: str | None, share: float, seed: int = 0):
        self.inner, self.arm, self.share = inner, arm, share
        self.rng = np.random.default_rng(seed)

    def log_assignment(self, event):
        if event.get("variation") == self.arm and self.rng.random() < self.share:
            return
        self.inner.log_assignment(event)


def _serve(store_path: Path, n: int, *, seed: int, drop_arm: str | None = None, drop_share: float = 0.0) -> None:
    """Serve the store's latest configuration to n visitors, log them (less the dropped), log revenue."""
    scenario = make_scenario("multi_winner", 3)
    rng = np.random.default_rng(seed)
    with EventStore(str(store_path)) as store:
        logger = StoreLogger(store, buffer_size=10_000)
        client = Client(Configuration.from_json(store.configuration().flags),
                        assignment_logger=_DropSome(logger, drop_arm, drop_share, seed))
        visitors = scenario.sample_visitors(n, rng)
        subjects = [f"v{seed}-{i}" for i in range(n)]
        arms = [client.get_assignment(FLAG, s, a, "control")
                for s, a in zip(subjects, visitor_attributes(visitors), strict=True)]
        logger.flush()
        y = scenario.sample_outcomes(visitors, np.array([scenario.arms.index(a) for a in arms]), rng)
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)  # after every exposure logged
        store.append_outcomes([{"subject": s, "metric": METRIC, "value": abs(float(v)), "timestamp": later}
                               for s, v in zip(subjects, y, strict=True)])


def _create(folder: Path) -> tuple[Path, Path]:
    store, state = folder / "events.duckdb", folder / "state.json"
    arms = ",".join(make_scenario("multi_winner", 3).arms)
    res = invoke(["round", store, "--flag", FLAG, "--metric", METRIC, "--kind", "revenue", "--arms", arms,
                  "--engine", "stratified", "--state", state, "--out", folder / "out"])
    assert res.exit_code == 0, res.text
    return store, state


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with one round of exposures to FLAG (served by the round-0 plan) and its state."""
    folder = tmp_path_factory.mktemp("served")
    store, state = _create(folder)
    _serve(store, 600, seed=1)
    return store, state


@pytest.fixture
def copies(served, tmp_path):
    store, state = served
    return Path(shutil.copy(store, tmp_path / "events.duckdb")), Path(shutil.copy(state, tmp_path / "state.json"))


def _digest(*paths: Path) -> dict[str, str | None]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths}


def _round(store: Path, state: Path, *extra) -> object:
    return invoke(["round", store, "--flag", FLAG, "--metric", METRIC, "--state", state,
                   "--out", state.parent / "out", *extra])


# --- round -----------------------------------------------------------------------------------------
def test_round_refuses_a_metric_without_outcome_events(copies):
    before = _digest(*copies)
    res = invoke(["round", copies[0], "--flag", FLAG, "--metric", "revenu", "--state", copies[1],
                  "--out", copies[1].parent / "out"])
    assert res.exit_code == 2
    assert "metric 'revenu' has no outcome events in the store (did you mean 'revenue'?)" in res.text
    assert "metrics with outcomes: 'revenue'" in res.text
    assert _digest(*copies) == before


def test_round_refuses_a_new_flag_that_looks_like_a_typo(copies):
    store, _ = copies
    state = store.parent / "other.json"
    before = _digest(store, state)
    res = invoke(["round", store, "--flag", "chekout", "--metric", METRIC, "--kind", "revenue",
                  "--arms", "control,a", "--state", state, "--out", store.parent / "out"])
    assert res.exit_code == 2
    assert "flag 'chekout' is new to the store" in res.text and "(did you mean 'checkout'?)" in res.text
    assert "--new-flag" in res.text
    assert _digest(store, state) == before and not state.exists()
    ok = invoke(["round", store, "--flag", "chekout", "--metric", METRIC, "--kind", "revenue", "--arms",
                 "control,a", "--state", state, "--out", store.parent / "out", "--new-flag"])
    assert ok.exit_code == 0, ok.text
    assert "keeps its other flags beside 'chekout': 'checkout'" in ok.text  # said, not silent


def test_round_refuses_a_typod_store_path(copies):
    store, state = copies
    res = _round(store.with_name("event.duckdb"), state)
    assert res.exit_code == 2 and "event store" in res.text and "(did you mean 'events.duckdb'?)" in res.text
    assert not store.with_name("event.duckdb").exists()


def test_round_checks_options_before_reading_anything(tmp_path):
    store, state = tmp_path / "events.duckdb", tmp_path / "s.json"
    for extra, message in (
        (["--window", "7 days"], "'7 days' is not a duration; give a number and a unit: 7d, 12h"),
        (["--kind", "revenu"], "'revenu' is not one of 'revenue', 'binary', 'continuous'. (did you mean 'revenue'?)"),
        (["--engine", "forest"], "'forest' is not one of 'bcf', 'stratified'"),
    ):
        res = _round(store, state, "--arms", "control,a", *extra)
        assert res.exit_code == 2 and message in res.text, res.text
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not store.exists() and not state.exists()


def test_a_sample_ratio_mismatch_blocks_the_round_unless_allowed(tmp_path):
    store, state = _create(tmp_path)
    _serve(store, 900, seed=2, drop_arm="arm_2", drop_share=0.5)  # half of one arm's exposures lost
    before = _digest(store, state)
    res = _round(store, state)
    assert res.exit_code == 3
    assert "sample-ratio mismatch" in res.text and "arm_2" in res.text
    assert "Nothing was saved or published" in res.text and "--allow-srm" in res.text
    assert _digest(store, state) == before
    ok = _round(store, state, "--allow-srm")
    assert ok.exit_code == 0, ok.text
    assert "sample-ratio mismatch" in ok.text
    page = sorted((tmp_path / "out").glob("round-*/index.html"))[-1].read_text()  # the round's report
    assert page.index("Sample-ratio mismatch") < page.index("<h2>")  # the banner is at the top


def test_a_healthy_round_passes_the_sample_ratio_check(copies):
    res = _round(*copies)
    assert res.exit_code == 0, res.text
    assert "sample-ratio check passed" in res.text
    report = sorted((copies[1].parent / "out").glob("round-*/index.html"))[-1]  # the round's report
    assert "sample-ratio check passed" in report.read_text()


# --- analyze on an event store --------------------------------------------------------------------------
def test_analyze_opens_the_store_read_only_and_refuses_typos(copies, tmp_path):
    store, _ = copies
    before = _digest(store)
    ok = invoke(["analyze", store, "--flag", FLAG, "--metric", METRIC, "--kind", "revenue", "--engine",
                 "stratified", "--out", tmp_path / "a"])
    assert ok.exit_code == 0, ok.text
    assert "sample-ratio check passed" in ok.text  # logged propensities: the inverse-propensity check
    for args, message in (
        (["--flag", "chekout", "--metric", METRIC], "flag 'chekout' has no exposures (assignment events) in the "
                                                   "store (did you mean 'checkout'?)"),
        (["--flag", FLAG, "--metric", "revenu"], "(did you mean 'revenue'?)"),
    ):
        res = invoke(["analyze", store, *args, "--kind", "revenue", "--out", tmp_path / "b"])
        assert res.exit_code == 2 and message in res.text, res.text
    assert _digest(store) == before


def test_read_only_commands_never_create_a_store(tmp_path, served):
    typo = tmp_path / "event.duckdb"
    (tmp_path / "events.duckdb").write_bytes(served[0].read_bytes())
    for args in (
        ["analyze", typo, "--flag", FLAG, "--metric", METRIC],
        ["bandit", "train", typo, "--metric", METRIC, "--out", tmp_path / "m.json"],
        ["bandit", "evaluate", typo, "--metric", METRIC, "--model", tmp_path / "m.json"],
    ):
        res = invoke(args)
        assert res.exit_code == 2 and "does not exist (did you mean 'events.duckdb'?)" in res.text, res.text
        assert not typo.exists()


def test_a_users_own_duckdb_file_is_not_an_event_store(tmp_path):
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE visits AS SELECT 1 AS arm")
    before = _digest(path)
    res = invoke(["bandit", "train", path, "--metric", METRIC, "--out", tmp_path / "m.json"])
    assert res.exit_code == 2 and "is not a Sortition event store" in res.text
    assert _digest(path) == before  # no event tables were created in the user's file


def test_a_locked_duckdb_file_says_who_holds_it(tmp_path):
    path = tmp_path / "d.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r})
        con.execute("CREATE TABLE t AS SELECT 'control' AS arm, 1.0 AS y")
        print("ready", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        res = invoke(["analyze", path, "--kind", "revenue"])
        assert res.exit_code == 2
        assert f"is held by process {holder.pid}" in res.text and "Traceback" not in res.output
    finally:
        holder.communicate("\n", timeout=30)


def test_a_postgres_url_without_psycopg_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    res = invoke(["bandit", "train", "postgresql://u:p@localhost/db", "--metric", METRIC, "--out", tmp_path / "m"])
    assert res.exit_code == 2 and "pip install sortition[postgres]" in res.text
    assert "Traceback" not in res.output


# --- analyze on a data file ---------------------------------------------------------------------------
def _table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.choice(["control", "bundle", "discount"], size=n)
    spend = np.where(rng.random(n) < 0.6, 0.0, rng.gamma(2.0, 20.0, n).round(2))
    return pd.DataFrame({"visitor": [f"u{i}" for i in range(n)], "variant": arm, "spend": spend,
                         "device": rng.choice(["mobile", "desktop"], size=n), "age": rng.integers(18, 70, n)})


def _analyze(path: Path, tmp_path: Path, *extra) -> object:
    return invoke(["analyze", path, "--arm", "variant", "--outcome", "spend", "--subject", "visitor",
                   "--engine", "stratified", "--out", tmp_path / "out", *extra])


def test_a_tiny_mislabelled_arm_is_refused(tmp_path):
    frame = _table()
    frame.loc[[10, 20, 30, 40, 50, 60], "variant"] = "Control"
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    before = _digest(path)
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert res.exit_code == 2
    assert "arm 'Control' of column 'variant' has only 6 rows" in res.text and "(did you mean 'control'?)" in res.text
    assert "lines [12, 22, 32, 42, 52] (and 1 more) of d.csv" in res.text  # 1-based, after the header
    assert "--arms" in res.text and _digest(path) == before and not (tmp_path / "out").exists()


def test_an_arm_outside_arms_is_refused_with_its_lines(tmp_path):
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    res = _analyze(path, tmp_path, "--kind", "revenue", "--arms", "control,bundle")
    assert res.exit_code == 2
    assert "arm column 'variant' holds arms not in the arms 'control', 'bundle': 'discount'" in res.text
    assert "lines [" in res.text and " of d.csv" in res.text


def test_the_control_is_the_arm_named_control_or_must_be_named(tmp_path):
    path = tmp_path / "d.csv"
    frame = _table()
    frame["variant"] = frame["variant"].replace({"control": "baseline"})
    frame.to_csv(path, index=False)
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert res.exit_code == 2
    assert "which arm of column 'variant' is the control? None is named 'control'" in res.text
    assert "'baseline', 'bundle', 'discount'" in res.text and "--control" in res.text
    res = _analyze(path, tmp_path, "--kind", "revenue", "--control", "basline")
    assert res.exit_code == 2 and "(did you mean 'baseline'?)" in res.text


def test_the_outcome_kind_is_inferred_and_printed_or_required(tmp_path):
    path = tmp_path / "d.csv"
    frame = _table()
    frame.to_csv(path, index=False)
    res = _analyze(path, tmp_path)
    assert res.exit_code == 0, res.text
    assert "Outcome kind: revenue (inferred: 'spend' is non-negative and" in res.text
    frame.assign(spend=frame["spend"] - 10).to_csv(path, index=False)
    res = _analyze(path, tmp_path)
    assert res.exit_code == 2 and "what kind of outcome is 'spend'? It has negative values" in res.text
    assert "--kind continuous" in res.text
    frame.assign(spend=(frame["spend"] > 0).astype(int)).to_csv(path, index=False)
    res = _analyze(path, tmp_path)
    assert res.exit_code == 0 and "Outcome kind: binary (inferred: 'spend' is 0/1" in res.text


def test_messages_use_the_users_columns_and_file_lines(tmp_path):
    path = tmp_path / "d.csv"
    frame = _table()
    frame["spend"] = (frame["spend"] > 0).astype(float)
    frame.loc[7, "spend"] = 2.0
    frame.to_csv(path, index=False)
    res = _analyze(path, tmp_path, "--kind", "binary")
    assert res.exit_code == 2
    assert "outcome column 'spend' must be 0/1 for outcome='binary' but has 2 at lines [9] of d.csv" in res.text
    assert "np.float64" not in res.output and "Traceback" not in res.output
    res = _analyze(path, tmp_path, "--kind", "binary", "--outcome", "spnd")
    assert res.exit_code == 2 and "outcome column 'spnd' is not in the data (did you mean 'spend'?)" in res.text
    frame.astype({"spend": object}).assign(spend=lambda f: f["spend"].where(f.index != 4, "unknown")).to_csv(
        path, index=False)
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert res.exit_code == 2 and "non-numeric values at lines [6] of d.csv (e.g. 'unknown')" in res.text


@pytest.mark.parametrize("suffix", ["csv", "csv.gz", "parquet", "duckdb"])
def test_a_timestamp_column_is_dropped_with_one_warning_line_in_every_format(tmp_path, suffix):
    frame = _table(300).assign(signed_up=pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC"))
    path = tmp_path / f"d.{suffix}"
    write_table(frame, path)
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert res.exit_code == 0, res.text
    lines = [line for line in res.output.splitlines() if "signed_up" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: column 'signed_up' holds timestamps")
    assert ".py:" not in res.output  # no source file and line


def test_table_and_query_are_for_duckdb_only(tmp_path):
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    res = _analyze(path, tmp_path, "--kind", "revenue", "--table", "visits")
    assert res.exit_code == 2 and "--table reads a DuckDB database, but d.csv is a CSV file" in res.text
    res = _analyze(path, tmp_path, "--kind", "revenue", "--metric", "spend")
    assert res.exit_code == 2 and "name the outcome column with --outcome" in res.text


def test_a_broken_csv_line_is_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("variant,spend\ncontrol,1\nbundle,2,3\n")
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert res.exit_code == 2 and "line 3 of d.csv has 3 fields, but the header has 2" in res.text


def test_a_repeated_csv_header_is_refused(tmp_path):
    """pandas would read the second 'spend' as 'spend.1' and fit it as a covariate."""
    path = tmp_path / "d.csv"
    path.write_text("variant,spend,age,spend,,\ncontrol,1,30,1,,\nbundle,2,40,2,,\n")
    res = _analyze(path, tmp_path, "--kind", "revenue", "--arm", "variant", "--outcome", "spend")
    assert res.exit_code == 2 and "repeats column names: 'spend' is columns [2, 4]" in res.text, res.text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_version_option():
    import sortition

    res = invoke(["--version"])
    assert res.exit_code == 0 and res.text == f"sortition {sortition.__version__}"


def test_an_unexpected_failure_is_one_line_unless_debugging(tmp_path, monkeypatch):
    from dataclasses import replace

    from sortition.experiment import loop_policy

    def boom(*args, **kwargs):
        raise RuntimeError("sampler diverged\n  at frame 3")

    monkeypatch.setattr(loop_policy, "DEFAULT_POLICY", replace(loop_policy.DEFAULT_POLICY, fit=boom))
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip() == "error: RuntimeError: sampler diverged (set SORTITION_DEBUG=1 for the traceback, " \
                                 "and please report it)"
    monkeypatch.setenv("SORTITION_DEBUG", "1")
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert isinstance(res.exception, RuntimeError)


def test_bandit_train_refuses_a_metric_without_outcome_events(copies, tmp_path):
    before = _digest(copies[0])
    res = invoke(["bandit", "train", copies[0], "--metric", "revenu", "--out", tmp_path / "m.json"])
    assert res.exit_code == 2 and "metric 'revenu' has no outcome events in the store (did you mean 'revenue'?)" \
        in res.text
    assert _digest(copies[0]) == before and not (tmp_path / "m.json").exists()


def test_analyze_flags_propensities_that_do_not_match_the_split(tmp_path):
    frame = _table(1500, seed=3)
    rng = np.random.default_rng(3)
    frame["variant"] = rng.choice(["control", "bundle", "discount"], size=len(frame), p=[0.2, 0.3, 0.5])
    frame["p"] = 1 / 3  # logged as uniform, served 20/30/50
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    res = _analyze(path, tmp_path, "--kind", "revenue", "--propensity", "p")
    assert res.exit_code == 0, res.text  # analyze reports; only `round` blocks a publish
    assert "warning: sample-ratio mismatch: arm" in res.text and "inverse-propensity count" in res.text
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.index("Sample-ratio mismatch") < page.index("<h2>")


def test_a_parquet_date_column_is_a_timestamp_too(tmp_path):
    import datetime as dt

    frame = _table(300).assign(first_visit=[dt.date(2024, 1, 1) + dt.timedelta(days=i % 90) for i in range(300)])
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)  # date32: read back as datetime.date objects
    res = _analyze(path, tmp_path, "--kind", "revenue")
    assert res.exit_code == 0, res.text
    assert "warning: column 'first_visit' holds timestamps, not a covariate; dropped" in res.text


@pytest.mark.parametrize("command", [[], ["analyze"], ["round"], ["bandit"], ["bandit", "evaluate"], ["keys"],
                                     ["keys", "create"]])
def test_help_shows_plain_metavars(command):
    res = invoke([*command, "--help"], columns=200)
    assert res.exit_code == 0
    assert "{" not in res.text.split("Usage:")[1].split("\n")[0] and "<str>" not in res.text and "<bool>" not in res.text
    if command == ["analyze"]:
        assert "[OPTIONS] DATA" in res.text and "TEXT" in res.text and "[revenue|binary|continuous]" in res.text


def _commands(command, path=("sortition",)):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_help_wraps_with_the_terminal_not_the_docstring():
    import typer.main

    from sortition.cli import app

    for path, command in _commands(typer.main.get_command(app)):
        paragraphs = (command.help or "").split("\n\n")
        where = " ".join(path)
        assert all("\n" not in p for p in paragraphs), f"{where}: a paragraph keeps a source line break"
    listing = invoke(["--help"], columns=200).output  # rich keeps a kept break: 'learn,' would end a line
    assert "read new exposures and outcomes from STORE, learn, save the next configuration" in listing


def test_a_mistyped_keys_option_is_one_error_line(tmp_path):
    res = invoke(["keys", "create", tmp_path / "ev.duckdb", "--rol", "sdk"], columns=40)
    assert res.exit_code == 2
    assert res.output.startswith("error: No such option: --rol") and "(Possible options: --role)" in res.text
    # no box that wraps with the terminal's width, and nothing created
    assert "\u256d" not in res.output and not (tmp_path / "ev.duckdb").exists()


def test_no_help_text_holds_square_brackets_that_rich_would_eat_as_markup():
    import typer.main

    from sortition.cli import app

    markup = re.compile(r"\[[a-z/#@][^\]]*\]")  # what rich takes for a style tag (and prints nothing of)
    for path, command in _commands(typer.main.get_command(app)):
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        for text in texts:
            assert not markup.search(text), f"{' '.join(path)}: {text!r} loses its [...] in --help"


UFC = Path(__file__).resolve().parents[1] / "conformance" / "eppo" / "ufc"


@pytest.mark.parametrize("args, option", [
    (["bandit", "simulate", "--rounds", "1", "--subjects", "20", "--save-model", "{out}"], "--save-model"),
    (["bandit", "train", "ev.duckdb", "--metric", "reward", "--out", "{out}"], "--out"),
    (["calibrate", "--db", "{out}"], "--db"),
    (["calibrate", "--out", "{out}"], "--out"),
    (["score", str(UFC / "flags-v1.json"), "aud.csv", "{out}", "--flag", "kill-switch"], "output"),
])
def test_an_output_in_a_missing_folder_is_refused_before_the_work(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"subject": ["a", "b"], "country": ["US", "FR"]}).to_csv("aud.csv", index=False)
    res = invoke([a.replace("{out}", "typo/out.json") for a in args])
    assert res.exit_code == 2, res.text
    assert f"cannot write {option} 'typo/out.json': the folder 'typo' does not exist" in res.text
    assert "scored" not in res.text and "regret" not in res.text and not Path("calibration.duckdb").exists()
    (tmp_path / "typo").mkdir()
    folder = invoke([a.replace("{out}", "typo") for a in args])
    assert folder.exit_code == 2 and f"{option} 'typo' is a folder; give a file name" in folder.text


NOT_UTF8 = b"\x80\x81 not text"


@pytest.mark.parametrize("args, what", [
    (["publish", "ev.duckdb", "bad.json"], "flags file 'bad.json'"),
    (["conformance", "bad.json", str(UFC / "tests")], "flags file 'bad.json'"),
    (["conformance", str(UFC / "flags-v1.json"), "cases"], "test file 'cases/bad.json'"),
    (["score", "bad.json", "aud.csv", "out.parquet", "--flag", "kill-switch"],
     "configuration file 'bad.json'"),
    (["score", str(UFC / "flags-v1.json"), "aud.csv", "out.parquet", "--flag", "kill-switch",
      "--bandits", "bad.json", "--actions", "bad.json"], "bandit models file 'bad.json'"),
])
def test_a_file_that_is_not_text_is_named_with_its_first_bad_byte(tmp_path, monkeypatch, args, what):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"subject": ["a", "b"], "country": ["US", "FR"]}).to_csv("aud.csv", index=False)
    Path("bad.json").write_bytes(NOT_UTF8)
    Path("cases").mkdir()
    Path("cases/bad.json").write_bytes(NOT_UTF8)
    res = invoke(args)
    assert res.exit_code == 2, res.text
    assert f"error: {what} is not UTF-8 text: line 1 holds byte 0x80 (offset 0)" in res.text
    assert not Path("ev.duckdb").exists() and not Path("out.parquet").exists()


def test_score_refuses_an_output_name_that_promises_another_format(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"subject": ["a", "b"], "country": ["US", "FR"]}).to_csv("aud.csv", index=False)
    args = ["score", str(UFC / "flags-v1.json"), "aud.csv", "--flag", "kill-switch"]
    res = invoke([*args[:3], "scores.csv", *args[3:]])
    assert res.exit_code == 2
    assert ("output 'scores.csv': the scores are written as Parquet, not .csv; "
            "name it 'scores.parquet'") in res.text
    assert not Path("scores.csv").exists()
    ok = invoke([*args[:3], "scores", *args[3:]])  # no suffix: Parquet, as documented
    assert ok.exit_code == 0, ok.text
    assert ok.output.startswith("scored 2 rows")  # no blank line left by a progress bar off a terminal
    assert pd.read_parquet("scores")["subject"].tolist() == ["a", "b"]


@pytest.mark.parametrize("args", [
    ["demo", "--rounds", "1", "--visitors", "50", "--engine", "stratified"],
    ["analyze", "a.csv", "--engine", "stratified"],
    ["round", "ev.duckdb", "--flag", "f", "--metric", "m", "--kind", "binary", "--arms", "a,b"],
])
def test_an_output_folder_that_is_a_file_is_refused_before_the_work(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    pd.DataFrame({"arm": ["control", "treatment"] * 100, "x": rng.integers(0, 3, 200),
                  "y": rng.integers(0, 2, 200)}).to_csv("a.csv", index=False)
    Path("notes").write_text("mine")
    for out, said in [
        ("notes", "output folder 'notes' is a file, not a folder; give a folder, such as 'notes-out'"),
        ("notes/r1", "output folder 'notes/r1' is inside 'notes', which is a file, not a folder; "
                     "give a folder, such as 'notes-out/r1'"),
    ]:
        res = invoke([*args, "--out", out])
        assert res.exit_code == 2 and f"error: {said}" in res.text, res.text
        assert "round 1:" not in res.text and "Outcome kind" not in res.text  # nothing ran first
    assert Path("notes").read_text() == "mine" and not Path("ev.duckdb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "notes"]


@pytest.mark.parametrize("arms", ["2", "5"])
def test_the_storefront_demo_refuses_an_arm_count_it_would_otherwise_ignore(tmp_path, arms):
    res = invoke(["demo", "--arms", arms, "--rounds", "1", "--visitors", "50", "--out", tmp_path / "d"])
    assert res.exit_code == 2
    assert (f"error: --arms {arms}: scenario 'storefront' has exactly 3 arms "
            "(control, free_shipping, bundle); leave --arms out") in res.text
    assert "round 1:" not in res.text and not (tmp_path / "d").exists()


def test_round_refuses_a_state_path_it_could_not_write_before_creating_the_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("states").mkdir()
    Path("notes").write_text("mine")
    first_run = ["round", "ev.duckdb", "--flag", "f", "--metric", "m", "--kind", "binary", "--arms", "a,b"]
    for state, said in [("states", "--state 'states' is a folder; give the state file's name, such as "
                                   "'states/f.state.json'"),
                        ("notes/f.json", "--state's folder 'notes' is a file, not a folder")]:
        res = invoke([*first_run, "--state", state])
        assert res.exit_code == 2 and f"error: {said}" in res.text, res.text  # was: 'Is a directory: states'
    # was: the first run's new store was left behind
    assert not Path("ev.duckdb").exists() and Path("notes").read_text() == "mine"


def test_a_demo_too_small_for_the_bcf_engine_says_which_demo_options_fix_it(tmp_path):
    res = invoke(["demo", "--visitors", "50", "--rounds", "1", "--out", tmp_path / "d"])
    assert res.exit_code == 2
    assert "Collect more data" in res.text  # the engine's own reason, then what the demo can change
    assert res.text.endswith("In the demo: more --visitors per round (now 50), or --engine stratified.")


def test_serve_refuses_a_port_in_use_before_announcing_itself(tmp_path):
    import socket

    store = tmp_path / "ev.duckdb"
    with EventStore(str(store)):
        pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = invoke(["serve", str(store), "--port", str(port)])
    assert res.exit_code == 2
    # was: "Sortition server on http://127.0.0.1:PORT serving ..." and then uvicorn's "[Errno 98]", exit 3
    assert res.output == (f"error: port {port} on 127.0.0.1 is in use (another server?); give another --port, "
                          "or --port 0 for a free one\n")


def test_a_server_url_without_its_scheme_is_refused_with_the_url_to_give():
    res = invoke(["versions", "--server", "127.0.0.1:8000", "--key", "srt_x"])
    # was httpx's "Request URL is missing an 'http://' or 'https://' protocol", after a connection attempt
    assert res.exit_code == 2 and res.text == ("error: --server '127.0.0.1:8000' needs its scheme: "
                                               "http://127.0.0.1:8000 (or https://)")


@pytest.mark.parametrize("location, says", [
    ("127.0.0.1:8000", "event store '127.0.0.1:8000' looks like a server address, not a file; give "
                       "http://127.0.0.1:8000 where a command takes a server"),
    ("htp://127.0.0.1:8000", "event store 'htp://127.0.0.1:8000': htp:// is not a store; give a DuckDB file"),
    ("http://127.0.0.1:8000", "http:// is not a store (a running server: give it where a command takes one"),
])
def test_a_store_that_is_meant_as_a_server_is_refused_not_created(tmp_path, monkeypatch, location, says):
    monkeypatch.chdir(tmp_path)
    for args in (["publish", location, str(UFC / "flags-v1.json")],
                 ["keys", "create", location, "--role", "sdk"],
                 ["round", location, "--flag", "f", "--metric", "m", "--kind", "binary", "--arms", "a,b"]):
        if args[0] == "round" and location.startswith("http://"):
            continue  # round runs at a server given as STORE
        res = invoke(args)
        assert res.exit_code == 2 and says in res.text, (args, res.text)
    assert list(tmp_path.iterdir()) == []  # was: a DuckDB file named '127.0.0.1:8000' (or a folder 'htp:')


def test_errors_and_warnings_go_to_stderr_so_that_json_output_stays_json(tmp_path):
    import json

    from typer.testing import CliRunner

    from sortition.cli import app

    rng = np.random.default_rng(0)
    pd.DataFrame({"arm": ["control", "treatment"] * 100, "x": rng.integers(0, 3, 200), "y": rng.normal(size=200),
                  "const": 1}).to_csv(tmp_path / "a.csv", index=False)
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "a.csv"), "--kind", "continuous", "--engine",
                                      "stratified", "--out", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning: covariate column 'const' is constant; dropped." in result.stderr
    assert json.loads(result.stdout)["round"] == 1  # was broken by the warning line before the document
    typo = CliRunner().invoke(app, ["analyze", str(tmp_path / "a.csv"), "--outcome", "yy", "--json"])
    assert typo.exit_code == 2 and typo.stdout == ""
    assert typo.stderr.startswith("error: outcome column 'yy' is not in the data (did you mean 'y'?)")
