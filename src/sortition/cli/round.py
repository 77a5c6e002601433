"""``sortition round STORE``: one round of a saved experiment on the new data in an event store."""

from __future__ import annotations

from pathlib import Path

import typer

from sortition.cli.app import app
from sortition.cli.console import console, fail
from sortition.cli.demo import _print_summary, _quiet_engines


@app.command(name="round")
def round_(
    store: str = typer.Argument(..., help="Event store: a DuckDB file or a postgresql:// URL."),
    flag: str = typer.Option(..., help="The flag (experiment) key the assignments are logged under."),
    metric: str = typer.Option(..., help="The outcome metric joined to the exposures."),
    kind: str = typer.Option(None, help="Outcome kind: revenue, continuous or binary (needed to create)."),
    arms: str = typer.Option(
        None, help="First run only: comma-separated arms, control first; creates the experiment."
    ),
    state: Path = typer.Option(None, help="The experiment's state file (default: OUT/<flag>.state.json)."),
    window_days: float = typer.Option(
        None, "--window-days", help="Attribution window in days (default: none)."
    ),
    aggregate: str = typer.Option(
        None, help="sum, count or conversion (default: conversion for binary, else sum)."
    ),
    engine: str = typer.Option("bcf", help="First run only: posterior engine, bcf or stratified."),
    threads: int = typer.Option(1, min=1, help="First run only: threads for the BCF engine."),
    seed: int = typer.Option(0, help="First run only: seed of the fits."),
    out: Path = typer.Option(
        Path("sortition-out"), help="Folder for the report (and the default state file)."
    ),
) -> None:
    """Advance a saved experiment by one round: read new exposures and outcomes from STORE, learn,
    save the next configuration to STORE and the state file, write the report."""
    from sortition.workflows.daily import daily_round

    _quiet_engines()
    state = state if state is not None else out / f"{flag}.state.json"
    try:
        with console.status(f"round of {flag!r}: reading {store} and fitting"):
            run = daily_round(
                store,
                flag,
                metric,
                state=state,
                outcome=kind,
                arms=None if arms is None else [a.strip() for a in arms.split(",") if a.strip()],
                engine=engine,
                threads=threads,
                seed=seed,
                window=None if window_days is None else window_days * 86400.0,
                aggregate=aggregate,
                out=out,
            )
    except (ValueError, TypeError, LookupError) as err:
        fail(err)
    exp = run.experiment
    if run.created:
        console.print(
            f"Created experiment [bold]{flag}[/]: arms {', '.join(exp.arms)} (control: {exp.arms[0]}), "
            f"outcome {exp.outcome}, engine {exp.engine}."
        )
    if run.recovered:
        console.print(
            f"Round {exp.round_} was committed by a run that stopped before publishing its configuration: "
            f"published it now. Serve configuration version [bold]{run.configuration_version}[/] (round "
            f"{exp.round_})."
        )
    elif run.result is None:
        console.print(
            f"No exposures yet. Serve configuration version [bold]{run.configuration_version}[/] "
            f"(round 0, uniform) from the store, log assignments and '{metric}' outcomes, then run "
            "this command again."
        )
    else:
        console.print(
            f"Round {run.result.round + 1}: read [bold]{run.n_new:,}[/] new exposures "
            f"({run.result.n_total:,} in all)."
        )
        _print_summary(exp, None)
        console.print(
            f"Next: serve configuration version [bold]{run.configuration_version}[/] (round "
            f"{exp.round_}); report: [bold]{run.report}[/]"
        )
    console.print(f"State saved to {run.state}.")
