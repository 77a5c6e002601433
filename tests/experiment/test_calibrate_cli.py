"""`sortition calibrate`: a tiny sweep from the command line."""

from cli_helpers import invoke

from sortition.posterior.calibration import Calibration


def test_cli_calibrate_writes_the_artifact_and_refuses_unknown_scenarios(tmp_path):
    args = ["calibrate", "--out", tmp_path / "c.json", "--db", tmp_path / "c.duckdb", "--scenarios", "homogeneous",
            "--sizes", "300", "--arms", "2", "--outcomes", "continuous", "--data", "adaptive", "--seeds", "1",
            "--engine", "stratified"]
    res = invoke(args)
    assert res.exit_code == 0, res.output
    assert "Measured 1 experiment;" in res.text and "segment:" in res.text and "80%:" in res.text
    # was said of no sweep: a correction fitted on one experiment (or a few) moves levels by noise
    assert ("warning: the coverage standard errors cannot be estimated from one experiment, so the correction "
            "is mostly noise; measure more experiments") in res.text
    assert Calibration.load(tmp_path / "c.json").meta["scenarios"] == ["homogeneous"]
    bad = invoke([*args[:6], "nope", *args[7:]])
    assert bad.exit_code != 0 and "unknown scenario 'nope'" in bad.text and "homogeneous" in bad.text


def test_cli_calibrate_sweeps_a_users_scenario_file_and_checks_an_artifact(tmp_path):
    worlds = tmp_path / "worlds.py"
    worlds.write_text("import numpy as np\n\ndef flat(v, k):\n    return np.full((len(v), k - 1), 0.4)\n\n"
                      "LIFTS = {'flat': flat}\n")
    common = ["--db", tmp_path / "c.duckdb", "--scenario-file", worlds, "--scenarios", "flat,homogeneous",
              "--sizes", "300", "--arms", "2", "--outcomes", "continuous", "--data", "uniform,adaptive",
              "--seeds", "1", "--engine", "stratified"]
    res = invoke(["calibrate", "--out", tmp_path / "c.json", *common])
    assert res.exit_code == 0, res.output
    assert "Measured 4 experiments" in res.text and "± " in res.text
    assert "warning: the coverage standard errors reach " in res.text  # 4 experiments: still noise
    meta = Calibration.load(tmp_path / "c.json").meta
    assert meta["scenarios"] == ["flat", "homogeneous"] and meta["user_scenarios"]["flat"]["source"] == str(
        worlds.resolve()) and len(meta["user_scenarios"]["flat"]["sha256"]) == 64
    check = invoke(["calibrate", "--evaluate", tmp_path / "c.json", *common])  # resumes: nothing runs again
    assert check.exit_code == 0, check.output
    assert "fitted on 4 experiments) on 4 experiments" in check.text and "average, adaptive (2 experiments): 50%:" in (
        check.text) and " -> " in check.text
    typo = invoke(["calibrate", *common[:4], "--scenarios", "flatt", *common[6:]])
    assert typo.exit_code != 0 and "unknown scenario 'flatt' (did you mean 'flat'?)" in typo.text
    worlds.write_text("LIFTS = {}\n")
    empty = invoke(["calibrate", *common])
    assert empty.exit_code != 0 and f"scenario file {str(worlds)!r}" in empty.text and "non-empty dict" in empty.text


def test_cli_calibrate_refuses_a_bad_axis_before_any_task_runs(tmp_path):
    base = ["calibrate", "--out", tmp_path / "c.json", "--db", tmp_path / "c.duckdb"]
    cases = [
        (["--sizes", "10"], "sizes: [10] visitors are too few: the bcf engine needs at least 11"),
        (["--sizes", "1000,x"], "--sizes: 'x' is not a whole number (comma-separated, e.g. --sizes 1000"),
        (["--arms", "1"], "arms: [1] arms are too few"),
        (["--engine", "bfc"], "engine: 'bfc' is not an engine (did you mean 'bcf'?)"),
        (["--outcomes", "binary,revenu"], "'revenu' is not an outcome kind (did you mean 'revenue'?)"),
        (["--data", "adaptiv"], "--data: 'adaptiv' is not a design (did you mean 'adaptive'?)"),
    ]
    for extra, words in cases:
        res = invoke([*base, *extra])
        assert res.exit_code == 2 and words in res.text, (extra, res.output)
    assert not (tmp_path / "c.duckdb").exists() and not (tmp_path / "c.json").exists()


def test_the_noise_warning_follows_the_standard_errors():
    from sortition.cli.calibrate import noise_warning
    from sortition.workflows.calibrate import Coverage

    def table(*ses):
        return {"segment": {0.8 + i / 100: Coverage(0.8, se, 200, 900) for i, se in enumerate(ses)}}

    assert noise_warning(table(0.012, 0.026)) is None  # a sweep of hundreds of experiments (docs/calibration.md)
    assert noise_warning(table(0.012, 0.07)).startswith("the coverage standard errors reach 7 points")
    assert "cannot be estimated from one experiment" in noise_warning(table(float("nan")))
