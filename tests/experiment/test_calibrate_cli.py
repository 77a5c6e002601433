"""`sortition calibrate`: a tiny sweep from the command line."""

from cli_helpers import invoke

from sortition.posterior.calibration import Calibration


def test_cli_calibrate_writes_the_artifact_and_refuses_unknown_scenarios(tmp_path):
    args = ["calibrate", "--out", tmp_path / "c.json", "--db", tmp_path / "c.duckdb", "--scenarios", "homogeneous",
            "--sizes", "300", "--arms", "2", "--outcomes", "continuous", "--data", "adaptive", "--seeds", "1",
            "--engine", "stratified"]
    res = invoke(args)
    assert res.exit_code == 0, res.output
    assert "Measured 1 experiments" in res.text and "segment:" in res.text and "80%:" in res.text
    assert Calibration.load(tmp_path / "c.json").meta["scenarios"] == ["homogeneous"]
    bad = invoke([*args[:6], "nope", *args[7:]])
    assert bad.exit_code != 0 and "unknown ['nope']" in bad.text and "homogeneous" in bad.text
