"""The product demo and one-shot analysis, as functions (the CLI in ``sortition.cli.demo`` is thin).

``run_demo``: a simulated adaptive experiment on a realistic scenario, served round by round
through the Client against exported flag configurations, logged to a DuckDB event store,
learned with the BCF posterior, and written up as an HTML report.

``analyze``: one round on a user's own data (CSV, Parquet or DuckDB), same report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sortition.experiment.schedules import fixed
from sortition.experiment.sequential import SequentialExperiment
from sortition.experiment.simulation import SimulationResult, simulate

DEMO_KEY = "storefront-checkout"


@dataclass(frozen=True)
class DemoRun:
    simulation: SimulationResult
    report: Path
    store: Path


def run_demo(
    *,
    scenario: str = "storefront",
    arms: int = 3,
    rounds: int = 6,
    visitors: int = 2000,
    engine: str = "bcf",
    threads: int = 1,
    draws: int = 100,
    seed: int = 0,
    out: str | Path = "sortition-out",
    on_round: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> DemoRun:
    """Run the simulated adaptive experiment and write the report into ``out``.

    Defaults (6 rounds of 2,000 visitors, BCF with 100 draws on one thread) take about
    1.5 minutes on 2 busy cores. One thread is deliberate: stochtree's threads contend badly
    with anything else running on a small machine.

    Returns:
        The simulation, the report path, and the DuckDB event store path (rewritten each run).
    """
    from sortition.scenarios import make_scenario
    from sortition.store import EventStore

    world = make_scenario(scenario, arms)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "events.duckdb"
    for stale in (store_path, store_path.with_name(store_path.name + ".wal")):
        stale.unlink(missing_ok=True)  # one demo = one experiment; subject keys restart at r00-000000
    fit_options: dict[str, Any] = {"progress": False, "draws": draws}
    if engine == "bcf":
        fit_options["num_threads"] = threads
    experiment = SequentialExperiment(
        world.arms,
        key=DEMO_KEY if scenario == "storefront" else f"{scenario}-experiment",
        outcome=world.outcome,
        engine=engine,
        fit_options=fit_options,
        schedule=fixed(rounds, visitors),
        seed=seed,
    )
    with EventStore(str(store_path)) as store:
        simulation = simulate(world, experiment, seed=seed, store=store, on_round=on_round)
    from sortition.report import write_report

    report = write_report(
        out, experiment, simulation,
        title=f"Sortition demo: {scenario} ({world.outcome}, {len(world.arms)} arms)",
        source=f"simulated scenario {scenario!r}, events in {store_path}",
    )
    return DemoRun(simulation, report, store_path)


def read_table(path: str | Path, *, query: str | None = None, table: str | None = None) -> pd.DataFrame:
    """A user's data as a DataFrame: CSV, Parquet, or a DuckDB database (``query`` or ``table``)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".duckdb", ".db", ".ddb"):
        import duckdb

        with duckdb.connect(str(path), read_only=True) as con:
            if query is None:
                if table is None:
                    tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
                    if len(tables) != 1:
                        raise ValueError(
                            f"{path} holds tables {tables}; name one with --table or give a --query"
                        )
                    table = tables[0]
                query = f'SELECT * FROM "{table}"'
            return con.execute(query).df()
    raise ValueError(f"cannot read {str(path)!r}: use a .csv, .parquet or .duckdb file")


def read_event_store(path: str | Path, flag: str, metric: str = "outcome") -> pd.DataFrame:
    """Exposures to ``flag`` joined to outcomes of ``metric`` from a Sortition event store.

    Columns: subject, arm, y, propensity, cell, round, then the logged subject attributes.
    """
    from sortition.store import EventStore

    path = Path(path)
    if not path.exists():
        raise ValueError(f"event store {str(path)!r} does not exist")
    with EventStore(str(path)) as store:
        frame = store.experiment_frame(flag, metric)
    if frame.empty:
        raise ValueError(f"the event store {str(path)!r} has no exposures to flag {flag!r}")
    return frame


def analyze(
    data: pd.DataFrame,
    *,
    arm: str = "arm",
    outcome: str = "y",
    subject: str | None = None,
    propensity: str | None = None,
    cell: str | None = None,
    round: str | None = None,
    arms: Sequence[str] | None = None,
    control: str | None = None,
    covariates: Sequence[str] | None = None,
    outcome_kind: str = "continuous",
    engine: str = "bcf",
    threads: int = 1,
    draws: int = 100,
    seed: int = 0,
    key: str = "sortition-experiment",
    out: str | Path = "sortition-out",
    source: str | None = None,
) -> tuple[SequentialExperiment, Path]:
    """One round of the loop on a user's data: posterior, segments, allocation, next plan, report."""
    names = {"arm": arm, "outcome": outcome, "subject": subject, "propensity": propensity, "cell": cell,
             "round": round}
    missing = {role: col for role, col in names.items() if col is not None and col not in data.columns}
    if missing:
        raise ValueError(
            f"columns {missing} are not in the data (columns: {list(data.columns)[:20]}); "
            "name them with --arm/--outcome/--subject/--propensity"
        )
    frame = data.reset_index(drop=True)
    clash = [c for c in ("subject", "arm", "outcome", "propensity", "cell", "round", "segment")
             if c in frame.columns and names.get(c) != c]
    if clash:
        frame = frame.rename(columns={c: f"{c}_" for c in clash})  # a covariate named like a role
    frame = frame.rename(columns={col: role for role, col in names.items() if col is not None})
    if subject is None:
        frame.insert(0, "subject", range(len(frame)))
    if arms is None:
        levels = sorted(frame["arm"].astype(str).unique())
        if control is not None:
            if str(control) not in levels:
                raise ValueError(f"control {control!r} is not among the arms {levels}")
            levels = [str(control)] + [a for a in levels if a != str(control)]
        arms = levels
    fit_options: dict[str, Any] = {"progress": False, "draws": draws}
    if engine == "bcf":
        fit_options["num_threads"] = threads
    experiment = SequentialExperiment(
        list(arms), key=key, outcome=outcome_kind, engine=engine, fit_options=fit_options, seed=seed,
        covariates=covariates,
    )
    if "round" in frame.columns:
        frame["round"] = 0  # one analysis round; the data's own rounds are not re-run
    experiment.advance(frame)
    from sortition.report import write_report

    report = write_report(out, experiment, title="Sortition analysis", source=source)
    return experiment, report
