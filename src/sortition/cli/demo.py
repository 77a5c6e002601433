"""``sortition demo`` and ``sortition analyze DATA``."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sortition.cli.app import app
from sortition.cli.console import console, fail
from sortition.cli.jsonout import print_json, status
from sortition.display import interval

if TYPE_CHECKING:
    from sortition.experiment.sequential import SequentialExperiment
    from sortition.experiment.simulation import SimulationResult



@app.command()
def demo(
    scenario: str = typer.Option("storefront", help="Scenario from sortition.scenarios."),
    arms: int = typer.Option(3, help="Arms, control included (scenarios with fixed arms ignore it)."),
    rounds: int = typer.Option(6, min=1, help="Rounds of the adaptive experiment."),
    visitors: int = typer.Option(2000, min=50, help="Visitors per round."),
    engine: str = typer.Option("bcf", help="Posterior engine: bcf or stratified."),
    threads: int = typer.Option(1, min=1, help="Threads for the BCF engine."),
    seed: int = typer.Option(0, help="Seed of the simulation and the fits."),
    out: Path = typer.Option(Path("sortition-out"), help="Output folder for the report and the event store."),
) -> None:
    """Simulate an adaptive experiment end to end and write an HTML report."""
    from sortition.workflows.demo import run_demo

    _quiet_engines()

    console.print(
        f"[bold]Sortition demo[/]: scenario [cyan]{scenario}[/], {rounds} rounds x {visitors:,} visitors, "
        f"engine {engine}"
    )
    started = time.perf_counter()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as progress:
        task = progress.add_task("round 1: serving", total=rounds)

        from sortition.report.rules import readable

        def on_round(stage: str, r: int, info: dict[str, Any]) -> None:
            if stage == "assign":
                progress.update(task, description=f"round {r + 1}: serving {info['n']:,} visitors via the Client")
            elif stage == "fit":
                progress.update(task, description=f"round {r + 1}: fitting the posterior, segments, allocation")
            elif stage == "done":
                result = info["round"].result
                progress.advance(task)
                winners = ", ".join(f"{readable(s.rule)} -> {s.best_arm}" for s in result.segments)
                progress.console.print(
                    f"  round {r + 1}: {info['round'].n:,} visitors, fit {result.seconds.get('fit', 0):.1f}s; "
                    f"{len(result.segments)} segments: {winners}"
                )

        try:
            run = run_demo(scenario=scenario, arms=arms, rounds=rounds, visitors=visitors, engine=engine,
                           threads=threads, seed=seed, out=out, on_round=on_round)
        except ValueError as err:
            fail(err)
    _print_summary(run.simulation.experiment, run.simulation)
    console.print(f"\nReport: [bold]{run.report}[/]  (events: {run.store}; next plan: {run.report.parent / 'configuration.json'})")
    console.print(f"Finished in {time.perf_counter() - started:.0f} s.")


@app.command()
def analyze(
    data: Path = typer.Argument(..., help="CSV, Parquet or DuckDB file: one row per subject."),
    arm: str = typer.Option("arm", help="Column of the arm each subject received."),
    outcome: str = typer.Option("y", help="Column of the outcome."),
    outcome_kind: str = typer.Option("continuous", "--kind", help="continuous, binary or revenue."),
    subject: str = typer.Option(None, help="Column of subject keys (default: row numbers)."),
    propensity: str = typer.Option(None, help="Column of the probability of the received arm."),
    control: str = typer.Option(None, help="The control arm (default: first in sorted order)."),
    arms: str = typer.Option(None, help="Comma-separated arms, control first (overrides --control)."),
    covariates: str = typer.Option(None, help="Comma-separated covariate columns (default: all others)."),
    query: str = typer.Option(None, help="DuckDB: the query that returns the rows."),
    table: str = typer.Option(None, help="DuckDB: the table to read."),
    flag: str = typer.Option(None, help="Sortition event store: the flag (experiment) key to analyse."),
    metric: str = typer.Option("outcome", help="Sortition event store: the outcome metric."),
    engine: str = typer.Option("bcf", help="Posterior engine: bcf or stratified."),
    threads: int = typer.Option(1, min=1, help="Threads for the BCF engine."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("sortition-out"), help="Output folder for the report."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (summary.json's content)."),
) -> None:
    """One round of the loop on your own data: posterior, segments, next allocation, HTML report."""
    from sortition.workflows.demo import analyze as run_analysis
    from sortition.workflows.demo import read_event_store, read_table

    _quiet_engines()
    try:
        if flag is not None:
            # exposures joined to outcomes: the join's own column names and logged propensities
            frame = read_event_store(data, flag, metric)
            arm, outcome, subject = "arm", "y", "subject"
            if frame["propensity"].notna().all():
                propensity = "propensity"
        else:
            frame = read_table(data, query=query, table=table)
        with status(f"fitting {len(frame):,} rows with the {engine} engine", as_json):
            experiment, report = run_analysis(
                frame, arm=arm, outcome=outcome, subject=subject, propensity=propensity,
                arms=None if arms is None else [a.strip() for a in arms.split(",")], control=control,
                covariates=None if covariates is None else [c.strip() for c in covariates.split(",")],
                outcome_kind=outcome_kind, engine=engine, threads=threads, seed=seed, out=out, source=str(data),
            )
    except (ValueError, TypeError) as err:
        fail(err)
    if as_json:
        from sortition.report import summary

        print_json({"report": str(report), "configuration": str(report.parent / "configuration.json"),
                    **summary(experiment)})
        return
    _print_summary(experiment, None)
    console.print(f"\nReport: [bold]{report}[/]  (next plan: {report.parent / 'configuration.json'})")


def _regret_change(saved: float, uniform: float) -> str:
    share = saved / uniform if uniform else 0.0
    return f"{share:.0%} less regret" if share >= 0 else f"{-share:.0%} more regret than uniform"


def _quiet_engines() -> None:
    # stochtree warns about covariates with few unique values (one-hot columns) on every fit
    warnings.filterwarnings("ignore", category=UserWarning, module="stochtree")


def _print_summary(experiment: SequentialExperiment, simulation: SimulationResult | None) -> None:
    result = experiment.results_[-1]
    checks = {c.id: c for c in simulation.segments} if simulation is not None else {}
    from sortition.report.facts import rule_texts

    texts = rule_texts(experiment, result)  # the report's readable rules
    table = Table(title=f"Segments after round {result.number}", show_lines=True)
    table.add_column("segment", ratio=1, min_width=12, overflow="fold")
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("best arm", no_wrap=True)
    table.add_column("decision", no_wrap=True)
    table.add_column("next allocation", no_wrap=True)
    for s in result.segments:
        best = f"{s.best_arm}\nP(best) {s.arm_best_probabilities.get(s.best_arm, 0):.2f}"
        check = checks.get(s.id)
        if check is not None:
            best += "\n[green]correct[/]" if check.correct else f"\n[red]truth:\n{check.true_best_arm}[/]"
        alloc = "\n".join(f"{a} {p:.0%}" for a, p in s.arm_probabilities.items() if p > 0)
        decision = result.decision(s.id)
        label = "-" if decision is None else decision.label
        table.add_row(texts[s.id][0], f"{s.share:.0%}", best, label, alloc)
    console.print(table)

    lifts = ", ".join(f"{x.arm} {interval(x.mean, x.lower, x.upper)} P(>0)={x.prob_positive:.2f}"
                      for x in result.lifts)
    console.print(f"Average lift vs control (90% CI): {lifts}")
    overall = result.decision("overall")
    shipped = [d for d in result.decisions if d.decision == "SHIP" and d.scope != "overall"]
    decisions = [f"overall [bold]{overall.label}[/] ({overall.reason})"] if overall is not None else []
    decisions += [f"segment {d.scope} [bold]{d.label}[/] (P(lift>0)={d.prob_positive:.3f}) - a graduation, "
                  "proposal only" for d in shipped]
    dropped = [a for a in experiment.arms if a not in experiment.active_arms_]
    decisions += [f"dropped [bold]{a}[/] (lost in every segment for {experiment.drop_after} rounds)" for a in dropped]
    if not shipped:
        decisions.append(f"no segment ships yet (SHIP needs a confident, cheap winner for "
                         f"{experiment.graduation_rounds} rounds in a row)")
    console.print("Decisions: " + "; ".join(decisions))
    if simulation is not None:
        n = sum(r.n for r in simulation.rounds)
        saved = simulation.uniform_regret - simulation.regret
        console.print(
            f"Regret vs oracle over {n:,} visitors: adaptive loop [bold]{simulation.regret:,.0f}[/] "
            f"({simulation.regret / n:.3f}/visitor), uniform A/B test {simulation.uniform_regret:,.0f} "
            f"({simulation.uniform_regret / n:.3f}/visitor): "
            f"{_regret_change(saved, simulation.uniform_regret)}."
        )
        pv = simulation.policy_values
        console.print(
            f"Value per visitor of the final segments' best arms {pv['segments']:.3f} vs oracle {pv['oracle']:.3f}, "
            f"best single arm {pv['best_single_arm']:.3f}, uniform {pv['uniform']:.3f}; "
            f"segments matching the truth: {simulation.segment_accuracy:.0%} of traffic."
        )
