"""``sortition demo`` and ``sortition analyze DATA``."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from sortition.cli.app import app
from sortition.cli.console import console, fail
from sortition.cli.jsonout import print_json, status
from sortition.cli.options import WINDOW_HELP, Engine, Kind, comma_list, parse_window
from sortition.display import interval
from sortition.scenarios import SCENARIOS

if TYPE_CHECKING:
    from sortition.experiment.results import RoundResult
    from sortition.experiment.sequential import SequentialExperiment
    from sortition.experiment.simulation import SimulationResult

Scenario = Literal[SCENARIOS]  # type: ignore[valid-type]

THREADS_HELP = ("Threads for the BCF engine (default: $OMP_NUM_THREADS, else every core; as the library's "
                "fit). Another count gives other draws: the same --seed and --threads reproduce a run.")


@app.command()
def demo(
    scenario: Scenario = typer.Option("storefront", help="Scenario from sortition.scenarios."),
    arms: int | None = typer.Option(
        None, min=2, help="Arms, control included (default: 3; storefront has 3 and refuses another count)."),
    rounds: int = typer.Option(6, min=1, help="Rounds of the adaptive experiment."),
    visitors: int = typer.Option(2000, min=50, help="Visitors per round."),
    engine: Engine = typer.Option("bcf", help="Posterior engine."),
    threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
    seed: int = typer.Option(0, min=0, help="Seed of the simulation and the fits."),
    out: Path = typer.Option(Path("sortition-out"), help="Output folder for the report and the event store."),
) -> None:
    """Simulate an adaptive experiment end to end and write an HTML report."""
    from sortition.data.files import require_output_folder
    from sortition.posterior.bcf import TooLittleData
    from sortition.workflows.demo import demo_arms, require_demo_store, run_demo

    _quiet_engines()
    try:  # checked again by run_demo; here, so that a refusal comes before the progress display
        arms = demo_arms(scenario, arms)
        require_output_folder(out, "output folder")
        require_demo_store(out / "events.duckdb")
    except ValueError as err:
        fail(err)
    console.print(
        f"[bold]Sortition demo[/]: scenario [cyan]{scenario}[/], {rounds} round{'s' * (rounds != 1)} x "
        f"{visitors:,} visitors, engine {engine}"
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
                churn = "" if result.churn is None else f"; churn {result.churn:.1%}"
                count = len(result.segments)
                progress.console.print(
                    f"  round {r + 1}: {info['round'].n:,} visitors, fit {result.seconds.get('fit', 0):.1f}s; "
                    f"{count} segment{'' if count == 1 else 's'}: {winners}{churn}"
                )

        try:
            run = run_demo(scenario=scenario, arms=arms, rounds=rounds, visitors=visitors, engine=engine,
                           threads=threads, seed=seed, out=out, on_round=on_round)
        except ValueError as err:
            progress.live.transient = True  # no stale "round 1: serving 0/N" line under the error
            hint = (f" In the demo: more --visitors per round (now {visitors:,}), or --engine stratified."
                    if isinstance(err, TooLittleData) else "")
            fail(f"{err}{hint}")
    _print_summary(run.simulation.experiment, run.simulation)
    console.print(f"\nReport: [bold]{run.report}[/]  (events: {run.store}; next plan: {run.report.parent / 'configuration.json'})")
    console.print(f"Finished in {time.perf_counter() - started:.0f} s.")


@app.command()
def analyze(
    data: Path = typer.Argument(..., help="CSV (or .csv.gz), Parquet or DuckDB file: one row per subject."),
    arm: str = typer.Option("arm", help="Column of the arm each subject received."),
    outcome: str = typer.Option("y", help="Column of the outcome."),
    outcome_kind: Kind | None = typer.Option(
        None, "--kind", help="Outcome kind (default: inferred and printed: 0/1 is binary, non-negative with many "
        "zeros is revenue; otherwise required)."
    ),
    subject: str = typer.Option(None, help="Column of subject keys (default: row numbers)."),
    propensity: str = typer.Option(None, help="Column of the probability of the received arm."),
    control: str = typer.Option(None, help="The control arm (default: the arm named 'control')."),
    arms: str = typer.Option(None, help="Comma-separated arms, control first (overrides --control)."),
    covariates: str = typer.Option(None, help="Comma-separated covariate columns (default: all others)."),
    query: str = typer.Option(None, help="DuckDB: the query that returns the rows."),
    table: str = typer.Option(None, help="DuckDB: the table to read."),
    flag: str = typer.Option(None, help="Sortition event store: the flag (experiment) key to analyse."),
    metric: str = typer.Option(
        None, help="Sortition event store: the outcome metric (default: the store's only metric)."
    ),
    window: str = typer.Option(None, help="Sortition event store: " + WINDOW_HELP),
    engine: Engine = typer.Option("bcf", help="Posterior engine."),
    threads: int | None = typer.Option(None, min=1, help=THREADS_HELP),
    seed: int = typer.Option(0, min=0, help="Seed of the fit."),
    out: Path = typer.Option(Path("sortition-out"), help="Output folder for the report."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (summary.json's content)."),
) -> None:
    """One round of the loop on your own data: posterior, segments, next allocation, HTML report."""
    from sortition.data.files import require_output_folder
    from sortition.workflows.demo import analyze as run_analysis
    from sortition.workflows.demo import prepare_analysis, read_table

    _quiet_engines()
    seconds = parse_window(window)
    try:
        require_output_folder(out, "output folder")  # before the data is read and fitted
        if flag is not None:
            frame, metric = _store_frame(data, flag, metric, seconds)
            arm, outcome, subject = "arm", metric, "subject"
            roles = {"propensity": "propensity" if frame["propensity"].notna().all() else None,
                     "cell": "cell" if frame["cell"].notna().all() else None,
                     "round": "round" if frame["round"].notna().all() else None}
            frame = frame.drop(columns=[c for c, used in roles.items() if used is None])
            propensity = roles["propensity"]
        else:
            if metric is not None or window is not None:
                fail(f"{'--metric' if metric is not None else '--window'} reads a Sortition event store (with "
                     "--flag); in a data file, name the outcome column with --outcome")
            frame = read_table(data, query=query, table=table)
            roles = {"cell": None, "round": None}
        prepared = prepare_analysis(
            frame, arm=arm, outcome=outcome, subject=subject, propensity=propensity, cell=roles["cell"],
            round=roles["round"], arms=comma_list(arms), control=control, covariates=comma_list(covariates),
            outcome_kind=outcome_kind,
        )
        if prepared.kind_reason is not None and not as_json:
            console.print(f"Outcome kind: [bold]{prepared.kind}[/] (inferred: {prepared.kind_reason}; "
                          "--kind to override).")
        if not as_json:
            _print_srm(prepared.srm)
        with status(f"fitting {len(frame):,} rows with the {engine} engine", as_json):
            experiment, report = run_analysis(
                prepared, engine=engine, threads=threads, seed=seed, out=out, source=str(data),
            )
    except (ValueError, TypeError) as err:
        fail(err)
    if as_json:
        from sortition.report import summary

        doc = summary(experiment)
        if prepared.srm is not None:
            doc["srm"] = prepared.srm.to_dict()
        print_json({"report": str(report), "configuration": str(report.parent / "configuration.json"), **doc})
        return
    _print_summary(experiment, None)
    console.print(f"\nReport: [bold]{report}[/]  (next plan: {report.parent / 'configuration.json'})")


def _store_frame(data: Path, flag: str, metric: str | None, window: float | None) -> tuple[Any, str]:
    """The event store's exposures to ``flag`` joined to ``metric`` (the store's only metric when None),
    with the outcome column named after the metric."""
    from sortition.data.files import file_kind
    from sortition.names import listing
    from sortition.store import EventStore
    from sortition.workflows.demo import read_event_store

    if file_kind(data) != "duckdb":
        fail(f"--flag reads a Sortition event store (a .duckdb file); {data.name} is a data file: drop --flag "
             "and name the columns with --arm/--outcome")
    if metric is None:
        from sortition.data.files import require_file

        with EventStore(str(require_file(data, "event store")), read_only=True) as store:
            metrics = store.metrics()
        if len(metrics) != 1:
            fail(f"name the outcome metric with --metric; the store has outcome events of {listing(metrics)}")
        metric = metrics[0]
        console.print(f"Outcome metric: [bold]{metric}[/] (the store's only metric).")
    frame = read_event_store(data, flag, metric, window=window)
    if metric not in frame.columns:
        frame = frame.rename(columns={"y": metric})  # errors then name the user's metric
    else:
        metric = "y"
    return frame, metric


def _print_srm(srm: Any) -> None:
    if srm is None:
        return
    if srm.ok:
        console.print(srm.describe() + ".", markup=False)
    else:
        console.print(f"[bold red]warning:[/] {escape(srm.describe())}.")


def _churn_text(experiment: SequentialExperiment, result: RoundResult) -> str:
    """The round's churn as a sentence ('' for the first round), with the churn cap when it bound."""
    from sortition.report.facts import churn_cap_note

    if result.churn is None:
        return ""
    return (f"Churn since last round: {result.churn:.1%} of visitors changed segment or served arm"
            f"{churn_cap_note(experiment, result)}.")


def _regret_change(saved: float, uniform: float) -> str:
    share = saved / uniform if uniform else 0.0
    return f"{share:.0%} less regret" if share >= 0 else f"{-share:.0%} more regret than uniform"


def _quiet_engines() -> None:
    # stochtree warns about covariates with few unique values (one-hot columns) on every fit
    warnings.filterwarnings("ignore", category=UserWarning, module="stochtree")


def _print_summary(experiment: SequentialExperiment, simulation: SimulationResult | None) -> None:
    result = experiment.results_[-1]
    checks = {c.id: c for c in simulation.segments} if simulation is not None else {}
    from sortition.report.facts import rule_texts, segment_change_text

    texts = rule_texts(experiment, result)  # the report's readable rules
    table = Table(title=f"Segments after round {result.number}", show_lines=True)
    table.add_column("segment", ratio=1, min_width=12, overflow="fold")
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("best arm", no_wrap=True)
    table.add_column("decision", no_wrap=True)
    table.add_column("next allocation", no_wrap=True)
    for s in result.segments:
        best = f"{escape(str(s.best_arm))}\nP(best) {s.arm_best_probabilities.get(s.best_arm, 0):.2f}"
        check = checks.get(s.id)
        if check is not None:
            best += "\n[green]correct[/]" if check.correct else f"\n[red]truth:\n{escape(str(check.true_best_arm))}[/]"
        alloc = "\n".join(f"{escape(str(a))} {p:.0%}" for a, p in s.arm_probabilities.items() if p > 0)
        decision = result.decision(s.id)
        label = "-" if decision is None else escape(str(decision.label))
        table.add_row(escape(str(texts[s.id][0])), f"{s.share:.0%}", best, label, alloc)
    console.print(table)

    lifts = ", ".join(f"{escape(str(x.arm))} {interval(x.mean, x.lower, x.upper)} P(>0)={x.prob_positive:.2f}"
                      for x in result.lifts)
    console.print(f"Average lift vs control (90% CI): {lifts}")
    overall = result.decision("overall")
    shipped = [d for d in result.decisions if d.decision == "SHIP" and d.scope != "overall"]
    decisions = [f"overall [bold]{escape(str(overall.label))}[/] ({escape(str(overall.reason))})"] if overall is not None else []
    decisions += [f"segment {escape(str(d.scope))} [bold]{escape(str(d.label))}[/] (P(lift>0)={d.prob_positive:.3f}) - a graduation, "
                  "proposal only" for d in shipped]
    dropped = [a for a in experiment.arms if a not in experiment.active_arms_]
    decisions += [f"dropped [bold]{escape(str(a))}[/] (lost in every segment for {experiment.drop_after} rounds)" for a in dropped]
    if not shipped:
        decisions.append(f"no segment ships yet (SHIP needs a confident, cheap winner for "
                         f"{experiment.graduation_rounds} rounds in a row)")
    console.print("Decisions: " + "; ".join(decisions))
    churn = _churn_text(experiment, result)
    if churn:
        console.print(churn, markup=False)
    segments = segment_change_text(experiment, result)
    if segments:
        console.print(segments, markup=False)
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
