"""Calibration: the sweep (tiny, on a local Dask cluster, resumable in DuckDB), the artifact, its use."""

import json
from dataclasses import replace

import numpy as np
import pytest

from sortition.posterior import fit
from sortition.posterior.calibration import LEVELS, Calibration, fit_calibration, isotonic
from sortition.scenarios import generate
from sortition.workflows.calibrate import (
    SweepTask,
    calibrate,
    done_tasks,
    held_out_table,
    load_results,
    run_sweep,
    simulate_data,
)


def _under_covering() -> Calibration:
    # intervals cover 10 points less than nominal (a typical overconfident posterior)
    curve = tuple(max(0.0, lv - 0.1) for lv in LEVELS)
    return Calibration(LEVELS, {"visitor": curve, "segment": curve, "average": curve}, ((0.1, 0.9), (0.2, 0.8)), 7)


def test_isotonic_and_the_inverse_correction():
    assert isotonic([0.1, 0.3, 0.2, 0.4]).tolist() == pytest.approx([0.1, 0.25, 0.25, 0.4])
    cal = _under_covering()
    assert cal.level("segment", 0.8) == pytest.approx(0.9)  # compute at 90% to cover 80%
    assert cal.level("average", 0.5) == pytest.approx(0.6)
    assert cal.level("visitor", 0.95) == pytest.approx(0.99)  # clipped to the grid's top level
    over = Calibration(LEVELS, {"segment": tuple(min(1.0, lv + 0.1) for lv in LEVELS)}, ((), ()), 3)
    assert over.level("segment", 0.8) == 0.8  # over-covering: by default the correction never narrows
    assert replace(over, narrow=True).level("segment", 0.8) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="not calibrated"):
        cal.level("cell", 0.9)
    assert cal.best_probability(np.array([0.1, 0.5, 0.9])).tolist() == pytest.approx([0.2, 0.5, 0.8])


def test_artifact_round_trip_and_application(tmp_path):
    cal = _under_covering()
    path = cal.save(tmp_path / "cal.json")
    assert Calibration.load(path) == cal and json.loads(path.read_text())["version"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**cal.to_json(), "version": 99}))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        Calibration.load(bad)
    bad.write_bytes(b"\x89PNG\r\n")  # the wrong file given as the calibration
    with pytest.raises(ValueError, match=r"'.*bad.json' is not UTF-8 text: line 1 holds byte 0x89 "):
        Calibration.load(bad)
    data, _ = generate("two_segments", 600, arms=2, outcome="binary", seed=1)
    plain = fit(data, outcome="binary", engine="stratified", draws=200, seed=0)
    calibrated = fit(data, outcome="binary", engine="stratified", draws=200, seed=0, calibration=path)
    assert calibrated.info["calibration"] == {"path": str(path), "n_experiments": 7} and "calibration" not in plain.info
    lo, hi = plain.cate_interval(0.8)
    clo, chi = calibrated.cate_interval(0.8)
    assert np.all(clo <= lo) and np.all(chi >= hi) and np.mean(chi - clo) > np.mean(hi - lo)
    assert np.allclose(clo, plain.cate_interval(0.9)[0])
    (a,), (b,) = plain.lift_summary(0.8), calibrated.lift_summary(0.8)
    assert b.lower < a.lower and b.upper > a.upper and b.mean == a.mean


def test_tiny_sweep_on_dask_resumes_and_fits(tmp_path):
    tasks = [SweepTask("two_segments", 400, 2, "continuous", adaptive, 0, engine="stratified",
                       fit_options={"draws": 100}) for adaptive in (False, True)]
    data, truth, _, _ = simulate_data(tasks[1])
    assert truth.shape == (400, 1) and len(np.unique(data.propensity)) > 2  # adaptive: propensities vary
    db = tmp_path / "sweep.duckdb"
    assert run_sweep(tasks[:1], db, processes=False) == 1
    assert len(done_tasks(db)) == 1
    cal = calibrate(tasks, db, tmp_path / "cal.json", processes=False)  # resumes: runs the second only
    assert len(load_results(db)) == 2 and cal.n_experiments == 2
    assert run_sweep(tasks, db, processes=False) == 0
    kinds = ("visitor", "segment", "average")
    assert set(cal.coverage) == {*kinds, *(f"{k}@{d}" for k in kinds for d in ("uniform", "adaptive"))}
    for curve in cal.coverage.values():
        assert np.all(np.diff(curve) >= 0) and 0.0 <= curve[0] <= curve[-1] <= 1.0
    assert Calibration.load(tmp_path / "cal.json") == cal and cal.meta["adaptive"] == [False, True]
    # on its own results, the correction brings the pooled coverage to nominal (where the curve reaches it)
    table = held_out_table(load_results(db), cal, levels=(0.8,))
    before, after = table["visitor"][0.8]
    assert abs(after.actual - 0.8) <= abs(before.actual - 0.8) + 1e-9
    assert before.experiments == 2 and before.effects == 800 and before.se >= 0
    with pytest.raises(ValueError, match="no sweep results"):
        fit_calibration([])



def test_the_report_says_whether_a_calibration_was_applied(tmp_path):
    from sortition.experiment import SequentialExperiment
    from sortition.report import render

    path = _under_covering().save(tmp_path / "cal.json")
    data, _ = generate("two_segments", 600, arms=2, outcome="binary", seed=1)
    frame = data.frame().rename(columns={"visitor_id": "subject", "y": "outcome"})
    pages = {}
    for name, options in (("plain", {}), ("calibrated", {"calibration": str(path)})):
        exp = SequentialExperiment(data.arms, outcome="binary", engine="stratified",
                                   fit_options={"draws": 100, **options}, seed=0)
        result = exp.advance(frame)
        assert result.calibrated_allocation == (name == "calibrated")
        pages[name] = render(exp)
    assert "not calibrated (nominal levels)" in pages["plain"]
    assert "calibrated on 7 simulated experiments; allocation P(best) calibrated too" in pages["calibrated"]


def test_the_average_effect_curve_pools_the_segment_measurements():
    seg, avg = np.full(len(LEVELS), 0.9), np.full(len(LEVELS), 0.5)
    results = [{"coverage": {"segment": seg.tolist(), "average": avg.tolist()},
                "weights": {"segment": 6, "average": 2}, "p_best": []}]
    cal = fit_calibration(results)
    # one curve for both kinds: (6 * 0.9 + 2 * 0.5) / 8 = 0.8
    assert cal.coverage["average"] == cal.coverage["segment"] == pytest.approx((0.8,) * len(LEVELS))
    assert cal.meta["pooled"]["average"] == ["segment", "average"]


def test_coverage_standard_error_treats_experiments_as_the_units():
    from sortition.workflows.calibrate import coverage_table

    curves = [np.full(len(LEVELS), c) for c in (1.0, 0.0, 1.0, 0.0)]
    results = [{"coverage": {"average": c.tolist()}, "weights": {"average": 2}} for c in curves]
    cell = coverage_table(results, levels=(0.8,))["average"][0.8]
    # mean 0.5; sqrt(4/3 * sum(2^2 * 0.25)) / 8 = sqrt(16/3) / 8
    assert cell.actual == 0.5 and cell.se == pytest.approx(np.sqrt(16 / 3) / 8) and cell.effects == 8


def test_adaptive_data_get_their_own_curve():
    from sortition.posterior.calibration import assignment_design

    def result(design, c):
        return {"coverage": {"segment": [c] * len(LEVELS), "average": [c] * len(LEVELS)},
                "weights": {"segment": 7, "average": 1}, "p_best": [], "design": design}

    cal = fit_calibration([result("uniform", 0.9), result("adaptive", 0.7)], narrow=True)
    assert cal.coverage["segment@uniform"] == pytest.approx((0.9,) * len(LEVELS))
    assert cal.coverage["average@adaptive"] == pytest.approx((0.7,) * len(LEVELS))
    assert cal.coverage["segment"] == pytest.approx((0.8,) * len(LEVELS))
    # a flat curve's inverse is its first level; the pooled one serves data of no known design
    assert cal.level("segment", 0.8, "adaptive") == cal.level("segment", 0.8, None) == LEVELS[0]
    arms = np.array([0, 1, 0, 1])
    assert assignment_design(np.array([0.5, 0.5, 0.5, 0.5]), arms) == "uniform"
    assert assignment_design(np.array([0.2, 0.8, 0.2, 0.8]), arms) == "uniform"  # a fixed unequal split
    assert assignment_design(np.array([0.5, 0.5, 0.3, 0.7]), arms) == "adaptive"
    assert assignment_design(None, arms) == "uniform"


def test_a_posterior_uses_the_curve_of_its_datas_design(tmp_path):
    curve = {kind: tuple(max(0.0, lv - 0.1) for lv in LEVELS) for kind in ("visitor", "segment", "average")}
    curve["average@uniform"] = tuple(LEVELS)  # uniform data: the average is already calibrated
    cal = Calibration(LEVELS, curve, ((), ()), 3)
    data, _ = generate("two_segments", 400, arms=2, outcome="binary", seed=1)  # one fixed split: uniform
    post = fit(data, outcome="binary", engine="stratified", draws=50, seed=0, calibration=cal)
    assert post.interval_level("average", 0.8) == pytest.approx(0.8)
    assert post.interval_level("segment", 0.8) == pytest.approx(0.9)  # no segment@uniform: the pooled curve
