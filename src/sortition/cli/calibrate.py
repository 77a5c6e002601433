"""``sortition calibrate``: measure interval coverage on simulated experiments and fit the correction."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from sortition.cli.app import app
from sortition.cli.console import console, fail, print_warning
from sortition.names import did_you_mean, listing

LEVELS_SHOWN = (0.5, 0.8, 0.9, 0.95)
DATA_MODES = ("uniform", "adaptive")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _counts(text: str, option: str, example: str) -> list[int]:
    """A comma-separated list of whole numbers, or an error naming ``option`` and the bad entries."""
    bad = [part for part in _names(text) if not part.isdigit()]
    if bad:
        what = "is not a whole number" if len(bad) == 1 else "are not whole numbers"
        raise ValueError(f"{option}: {listing(bad)} {what} (comma-separated, e.g. {option} {example})")
    return [int(part) for part in _names(text)]


@app.command()
def calibrate(
    out: Path = typer.Option(Path("calibration.json"), help="The calibration artifact (versioned JSON)."),
    db: Path = typer.Option(Path("calibration.duckdb"), help="Sweep results (DuckDB); a rerun resumes from it."),
    scenarios: str = typer.Option(None, help="Comma-separated scenarios: the library's names, names that a "
                                  "--scenario-file defines, or module:attr. Default: homogeneous, two_segments, "
                                  "reversal, multi_winner and every scenario of the files."),
    scenario_file: list[Path] = typer.Option([], help="A Python file of your own scenarios, in the library's "
                                             "form (LIFTS = {name: lift}); repeatable."),
    sizes: str = typer.Option("1000,3000", help="Comma-separated visitors per experiment."),
    arms: str = typer.Option("2,3", help="Comma-separated numbers of arms K."),
    outcomes: str = typer.Option("continuous,binary", help="Comma-separated outcome kinds."),
    data: str = typer.Option("uniform,adaptive", help="uniform and/or adaptive (loop-like) assignment."),
    seeds: int = typer.Option(3, min=1, help="Experiments per combination."),
    engine: str = typer.Option("bcf", help="Posterior engine: bcf or stratified."),
    draws: int = typer.Option(100, min=2, help="Posterior draws per fit."),
    evaluate: Path = typer.Option(None, help="Check this calibration artifact on the sweep (e.g. of scenarios it "
                                  "was not fitted on): print coverage before and after it; --out is not written."),
    narrow: bool = typer.Option(False, help="Let the correction narrow intervals that over-cover in the sweep "
                                "(default: it only widens; narrowing learned on the sweep's worlds under-covered "
                                "held-out ones)."),
    scheduler: str = typer.Option(None, help="A Dask scheduler address (default: a local cluster)."),
    workers: int = typer.Option(1, min=1, help="Local cluster workers (one thread each)."),
) -> None:
    """Run (or resume) a calibration sweep on Dask, then fit and save the monotone interval correction."""
    from sortition.cli.demo import _quiet_engines
    from sortition.data.files import require_output_file
    from sortition.posterior.calibration import Calibration
    from sortition.scenarios.user import resolve_scenarios
    from sortition.workflows.calibrate import calibrate as run
    from sortition.workflows.calibrate import load_results, run_sweep, stale_results, sweep_tasks

    _quiet_engines()
    try:
        require_output_file(db, "--db", "calibration.duckdb")
        if evaluate is None:
            require_output_file(out, "--out")
        worlds = resolve_scenarios(None if scenarios is None else _names(scenarios), scenario_file)
        modes = _names(data)
        for mode in modes:
            if mode not in DATA_MODES:
                raise ValueError(f"--data: {mode!r} is not a design{did_you_mean(mode, DATA_MODES)}; "
                                 f"use {listing(DATA_MODES)}, or both")
        checked = Calibration.load(evaluate) if evaluate is not None else None
        tasks = sweep_tasks(worlds, _counts(sizes, "--sizes", "1000,3000"), _counts(arms, "--arms", "2,3"),
                            _names(outcomes), [m == "adaptive" for m in modes], seeds, engine, {"draws": draws})
        for (name, source), count in stale_results(db, tasks).items():
            console.print(f"{count} stored results of scenario {name!r} are of an earlier version of {source}; "
                          "they are not used: the file as it is now runs again.", markup=False)
        with console.status(f"calibration sweep: {len(tasks)} experiments") as status:
            sweep = {"scheduler": scheduler, "workers": workers,
                     "progress": lambda i, n: status.update(f"calibration sweep: {i}/{n} new experiments")}
            calibration = None if checked else run(tasks, db, out, narrow=narrow, **sweep)
            if checked:
                run_sweep(tasks, db, **sweep)
    except (ValueError, TypeError) as err:
        fail(err)
    if checked is not None:
        _print_check(db, tasks, checked, evaluate)
        return
    _print_fit(load_results(db, tasks), calibration)
    console.print(f"Calibration saved to {out} (results in {db}); apply it with fit(..., calibration=PATH).",
                  markup=False)


NOISY_SE = 0.05  # a coverage SE above 5 points: a correction that moves levels by noise


def _cell(c) -> str:
    return f"{100 * c.actual:.1f} ± {100 * c.se:.1f}"


def _print_fit(results, calibration) -> None:
    from sortition.workflows.calibrate import coverage_table

    n = calibration.n_experiments
    console.print(f"Measured {n} experiment{'s' * (n != 1)}; actual coverage (%, ± SE over experiments) "
                  "of nominal intervals:")
    table = coverage_table(results, LEVELS_SHOWN)
    for kind, row in table.items():
        cells = "; ".join(f"{int(100 * lv)}%: {_cell(c)}" for lv, c in row.items())
        corrected = ", ".join(f"{int(100 * lv)}% -> {100 * calibration.level(kind, lv):.1f}%" for lv in row)
        by_design = "".join(
            f"; {design}: " + ", ".join(f"{100 * calibration.level(kind, lv, design):.1f}%" for lv in row)
            for design in ("uniform", "adaptive") if f"{kind}@{design}" in calibration.coverage)
        console.print(f"  {kind}: {cells}; corrected levels {corrected}{by_design}")
    warning = noise_warning(table)
    if warning is not None:
        print_warning(warning)


def noise_warning(table: dict) -> str | None:
    """What to say when a coverage table's standard errors exceed :data:`NOISY_SE` (or cannot be had)."""
    worst = max((c.se for row in table.values() for c in row.values()), default=float("nan"))
    if worst <= NOISY_SE:
        return None
    said = ("cannot be estimated from one experiment" if math.isnan(worst)
            else f"reach {100 * worst:.0f} points")
    return (f"the coverage standard errors {said}, so the correction is mostly noise; measure more "
            "experiments (--seeds, --scenarios, --sizes) before applying it")


def _print_check(db, tasks, calibration, path) -> None:
    """Before -> after per kind, for all the sweep's data and per data mode (uniform, adaptive)."""
    from sortition.workflows.calibrate import held_out_table, load_results

    modes = {"all": tasks}
    if len({t.adaptive for t in tasks}) > 1:
        modes.update(uniform=[t for t in tasks if not t.adaptive], adaptive=[t for t in tasks if t.adaptive])
    results = {label: load_results(db, subset) for label, subset in modes.items()}
    console.print(f"Checked {path} (fitted on {calibration.n_experiments} experiments) on {len(results['all'])} "
                  "experiments; actual coverage (%, ± SE over experiments), before -> after:", markup=False)
    for kind in ("visitor", "segment", "average"):
        for label in modes:
            table = held_out_table(results[label], calibration, LEVELS_SHOWN).get(kind)
            if not table:
                continue
            n = next(iter(table.values()))[0].experiments
            cells = "; ".join(f"{int(100 * lv)}%: {_cell(b)} -> {_cell(a)}" for lv, (b, a) in table.items())
            console.print(f"  {kind}, {label} ({n} experiments): {cells}")
