"""``sortition round STORE``: one round of a saved experiment on the new data in an event store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from sortition.cli.app import app
from sortition.cli.console import console, fail
from sortition.cli.demo import THREADS_HELP, _print_srm, _print_summary, _quiet_engines
from sortition.cli.jsonout import print_json, status
from sortition.cli.options import WINDOW_HELP, Aggregate, Engine, Kind, comma_list, parse_window

if TYPE_CHECKING:
    from sortition.workflows.daily import DailyRound

SRM_EXIT = 3  # the round was blocked by a sample-ratio mismatch (distinct from 2: bad input)


@app.command(name="round")
def round_(
    store: str = typer.Argument(
        ..., help="Event store: a DuckDB file or a postgresql:// URL (or http://SERVER: the server runs it)."
    ),
    flag: str = typer.Option(..., help="The flag (experiment) key the assignments are logged under."),
    metric: str = typer.Option(..., help="The outcome metric joined to the exposures."),
    kind: Kind | None = typer.Option(None, help="Outcome kind (needed to create)."),
    arms: str = typer.Option(
        None, help="First run only: comma-separated arms, control first; creates the experiment."
    ),
    state: Path = typer.Option(
        None, help="The experiment's state file (default: <flag>.state.json beside a DuckDB STORE, else in "
        "./sortition-state/; never inside OUT)."
    ),
    window: str = typer.Option(None, help=WINDOW_HELP),
    aggregate: Aggregate | None = typer.Option(
        None, help="How a subject's outcomes add up (default: conversion for binary, else sum)."
    ),
    engine: Engine = typer.Option("bcf", help="First run only: posterior engine."),
    threads: int | None = typer.Option(
        None, min=1, help="First run only: " + THREADS_HELP[0].lower() + THREADS_HELP[1:]
    ),
    seed: int = typer.Option(0, min=0, help="First run only: seed of the fits."),
    allow_srm: bool = typer.Option(
        False, "--allow-srm", help="Publish the next configuration even if the sample-ratio check fails."
    ),
    new_flag: bool = typer.Option(
        False, "--new-flag", help="First run only: create the flag even if its key is close to a stored flag's."
    ),
    out: Path = typer.Option(
        Path("sortition-out"),
        help="Folder of the round archive: OUT/round-NNNN/index.html per round, OUT/index.html.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print what the run did as JSON (with the round's summary)."
    ),
    publish: bool = typer.Option(False, "--publish", help="Serve the round's configuration (--environment)."),
    environment: str = typer.Option("production", help="With --publish: the environment that serves it."),
    key: str = typer.Option(None, envvar="SORTITION_ADMIN_KEY", help="With http://SERVER: an admin key."),
) -> None:
    """Advance a saved experiment by one round: read new exposures and outcomes from STORE, learn,
    save the next configuration to STORE and the state file, write the report.

    The new exposures are checked against the plan that served them (sample-ratio mismatch, per
    segment and cell); a failing check saves nothing and exits with code 3 unless --allow-srm.
    """
    from sortition.workflows.daily import SampleRatioMismatch, daily_round, default_state_path

    _quiet_engines()
    if not store.startswith(("http://", "https://")):  # http://SERVER: the server runs the round
        from sortition.store.store import check_location

        try:
            check_location(store)
        except ValueError as err:
            fail(err)
    state = state if state is not None else default_state_path(store, flag)
    seconds = parse_window(window)
    if publish:
        from sortition.store.publishing import check_environment

        try:
            check_environment(environment)  # before the round, not after it
        except ValueError as err:
            fail(err)
    if store.startswith(("http://", "https://")):  # the server holds the store: it runs the round
        from sortition.cli.server import print_remote_round

        print_remote_round(store, key, publish, environment, flag=flag, metric=metric, state=state, kind=kind,
                           arms=arms, window_days=None if seconds is None else seconds / 86400.0,
                           aggregate=aggregate, engine=engine, threads=threads, seed=seed, out=out,
                           allow_srm=allow_srm or None, new_flag=new_flag or None)
        return
    try:
        with status(f"round of {flag!r}: reading {store} and fitting", as_json):
            run = daily_round(
                store,
                flag,
                metric,
                state=state,
                outcome=kind,
                arms=comma_list(arms),
                engine=engine,
                threads=threads,
                seed=seed,
                window=seconds,
                aggregate=aggregate,
                out=out,
                publish=environment if publish else None,
                allow_srm=allow_srm,
                new_flag=new_flag,
            )
    except SampleRatioMismatch as err:
        fail(err, code=SRM_EXIT)
    except (ValueError, TypeError, LookupError) as err:
        fail(err)
    exp = run.experiment
    if as_json:
        print_json(_run_json(run))
        return
    if run.created:
        console.print(
            f"Created experiment [bold]{escape(flag)}[/]: arms {escape(', '.join(exp.arms))} (control: "
            f"{escape(exp.arms[0])}), outcome {exp.outcome}, engine {exp.engine}."
        )
        if run.other_flags:
            console.print(
                f"The store's configuration keeps its other flags beside {flag!r}: "
                f"{', '.join(repr(f) for f in run.other_flags[:10])}.", markup=False,
            )
    if run.recovered:
        console.print(
            f"Round {exp.round_} was committed by a run that stopped before publishing its configuration: "
            f"published it now. Serve configuration version [bold]{run.configuration_version}[/] (round "
            f"{exp.round_ + 1})."
        )
    elif run.result is None:
        console.print(
            f"No exposures yet. Serve configuration version [bold]{run.configuration_version}[/] "
            f"(round 1, uniform) from the store, log assignments and '{escape(metric)}' outcomes, then run "
            "this command again."
        )
    else:
        console.print(
            f"Round {run.result.number}: read [bold]{run.n_new:,}[/] new exposures "
            f"({run.result.n_total:,} in all)."
        )
        _print_srm(run.srm)
        _print_summary(exp, None)
        console.print(
            f"Next: serve configuration version [bold]{run.configuration_version}[/] (round "
            f"{run.result.number + 1}); report: [bold]{escape(str(run.report))}[/] "
            f"(all rounds: {escape(str(run.report.parent.parent / 'index.html'))})"
        )
    console.print(f"State saved to {run.state}.", markup=False)
    if publish:
        console.print(f"Published version [bold]{run.configuration_version}[/] to [bold]{escape(environment)}[/].")


def _run_json(run: DailyRound) -> dict[str, Any]:
    """``--json``: what the run did, and the round's summary (None when no round ran yet)."""
    from sortition.report import summary

    result = run.result
    doc = None if result is None else summary(run.experiment)
    if doc is not None and run.srm is not None:
        doc["srm"] = run.srm.to_dict()
    return {
        "flag": run.experiment.key,
        "created": run.created,
        "recovered": run.recovered,
        "round": None if result is None else result.number,
        "next_round": 1 if result is None else result.number + 1,
        "new_exposures": run.n_new,
        "configuration_version": run.configuration_version,
        "state": str(run.state),
        "report": None if run.report is None else str(run.report),
        "index": None if run.report is None else str(run.report.parent.parent / "index.html"),
        "summary": doc,
    }
