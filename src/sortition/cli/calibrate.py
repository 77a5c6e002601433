"""``sortition calibrate``: measure interval coverage on simulated experiments and fit the correction."""

from __future__ import annotations

from pathlib import Path

import typer

from sortition.cli.app import app
from sortition.cli.console import console, fail


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def calibrate(
    out: Path = typer.Option(Path("calibration.json"), help="The calibration artifact (versioned JSON)."),
    db: Path = typer.Option(Path("calibration.duckdb"), help="Sweep results (DuckDB); a rerun resumes from it."),
    scenarios: str = typer.Option("homogeneous,two_segments,reversal,multi_winner",
                                  help="Comma-separated scenarios of the library."),
    sizes: str = typer.Option("1000,3000", help="Comma-separated visitors per experiment."),
    arms: str = typer.Option("2,3", help="Comma-separated numbers of arms K."),
    outcomes: str = typer.Option("continuous,binary", help="Comma-separated outcome kinds."),
    data: str = typer.Option("uniform,adaptive", help="uniform and/or adaptive (loop-like) assignment."),
    seeds: int = typer.Option(3, min=1, help="Experiments per combination."),
    engine: str = typer.Option("bcf", help="Posterior engine: bcf or stratified."),
    draws: int = typer.Option(100, min=2, help="Posterior draws per fit."),
    scheduler: str = typer.Option(None, help="A Dask scheduler address (default: a local cluster)."),
    workers: int = typer.Option(1, min=1, help="Local cluster workers (one thread each)."),
) -> None:
    """Run (or resume) a calibration sweep on Dask, then fit and save the monotone interval correction."""
    from sortition.cli.demo import _quiet_engines
    from sortition.scenarios import SCENARIOS
    from sortition.workflows.calibrate import calibrate as run
    from sortition.workflows.calibrate import coverage_table, load_results, sweep_tasks

    _quiet_engines()
    try:
        unknown = [s for s in _names(scenarios) if s not in SCENARIOS]
        if unknown:
            raise ValueError(f"--scenarios: unknown {unknown}; choose from {list(SCENARIOS)}")
        modes = _names(data)
        bad = [m for m in modes if m not in ("uniform", "adaptive")]
        if bad:
            raise ValueError(f"--data: {bad} are not 'uniform' or 'adaptive'")
        tasks = sweep_tasks(_names(scenarios), [int(v) for v in _names(sizes)], [int(v) for v in _names(arms)],
                            _names(outcomes), [m == "adaptive" for m in modes], seeds, engine, {"draws": draws})
        with console.status(f"calibration sweep: {len(tasks)} experiments") as status:
            calibration = run(tasks, db, out, scheduler=scheduler, workers=workers,
                              progress=lambda i, n: status.update(f"calibration sweep: {i}/{n} new experiments"))
    except (ValueError, TypeError) as err:
        fail(err)
    table = coverage_table(load_results(db, tasks))
    console.print(f"Measured {calibration.n_experiments} experiments; actual coverage of nominal intervals:")
    for kind, row in table.items():
        cells = ", ".join(f"{int(100 * lv)}%: {100 * v:.1f}%" for lv, v in row.items())
        corrected = ", ".join(f"{int(100 * lv)}% -> {100 * calibration.level(kind, lv):.1f}%" for lv in row)
        console.print(f"  {kind}: {cells}; corrected levels {corrected}")
    console.print(f"Calibration saved to {out} (results in {db}); apply it with fit(..., calibration=PATH).")
