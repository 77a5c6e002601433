"""The product demo and one-shot analysis, as functions (the CLI in ``sortition.cli.demo`` is thin).

``run_demo``: a simulated adaptive experiment on a realistic scenario, served round by round
through the Client against exported flag configurations, logged to a DuckDB event store,
learned with the BCF posterior, and written up as an HTML report.

``analyze``: one round on a user's own data (CSV, Parquet or DuckDB), same report.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sortition.data import ExperimentData
from sortition.data.files import read_table, require_file, require_output_folder
from sortition.names import did_you_mean, listing
from sortition.scenarios import SCENARIOS
from sortition.data.validation import OUTCOME_KINDS, ROW_LABELS, check_outcome, infer_kind, labels_of
from sortition.experiment.schedules import fixed
from sortition.experiment.sequential import SequentialExperiment
from sortition.experiment.steps import ROLE_COLUMNS
from sortition.experiment.simulation import SimulationResult, simulate
from sortition.experiment.srm import SRMResult, srm_propensity
from sortition.workflows.guards import require_flag, require_metric

__all__ = ["AnalysisInput", "DemoRun", "analyze", "prepare_analysis", "read_event_store", "read_table", "run_demo"]

DEMO_KEY = "storefront-checkout"


@dataclass(frozen=True)
class DemoRun:
    simulation: SimulationResult
    report: Path
    store: Path


def demo_arms(scenario: str, arms: int | None) -> int:
    """The demo's arm count: the scenario's own when it has fixed arms (another count is refused,
    where the library would take 2 for them), else ``arms`` or 3."""
    from sortition.scenarios.library import FIXED_ARMS

    fixed = FIXED_ARMS.get(scenario)
    if fixed is None:
        return 3 if arms is None else arms
    if arms is not None and arms != len(fixed):
        raise ValueError(f"--arms {arms}: scenario {scenario!r} has exactly {len(fixed)} arms "
                         f"({', '.join(fixed)}); leave --arms out, or pick a scenario that takes any count")
    return len(fixed)


def require_demo_store(path: Path) -> None:
    """Refuse to replace an event store that a demo did not write (a user's own ``events.duckdb`` in
    ``--out``, or a store a server holds): the demo deletes the one it finds there."""
    import duckdb

    from sortition.store import EventStore
    from sortition.store.publishing import list_keys

    if not path.exists():
        return
    demo_flags = {DEMO_KEY} | {f"{name}-experiment" for name in SCENARIOS}
    try:
        with EventStore(str(path), read_only=True) as store:
            flags = set(store.flag_keys()) | set(store.bandit_flag_keys())
            foreign = sorted(flags - demo_flags)
            keys = len(list_keys(store))
            events = sum(store.event_counts().values())
    except (ValueError, OSError, duckdb.Error) as err:  # not a store, or one another process holds
        raise ValueError(f"{path} is there and cannot be read as a demo's event store ({err}); the demo "
                         "would delete it: give the demo its own --out folder") from None
    held = (f"events of flags {listing(foreign)}" if foreign
            else f"{keys} API key{'s' * (keys != 1)}" if keys
            else f"{events:,} event{'s' * (events != 1)} and no demo's exposures"
            if events and not flags & demo_flags else None)
    if held is not None:
        raise ValueError(f"{path} holds {held}: it is not a demo's store, and the demo would delete it; give "
                         "the demo its own --out folder")


def run_demo(
    *,
    scenario: str = "storefront",
    arms: int | None = None,
    rounds: int = 6,
    visitors: int = 2000,
    engine: str = "bcf",
    threads: int | None = None,
    draws: int = 100,
    seed: int = 0,
    out: str | Path = "sortition-out",
    on_round: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> DemoRun:
    """Run the simulated adaptive experiment and write the report into ``out``.

    Defaults: the scenario's own arms (storefront: 3) or else 3, 6 rounds of 2,000 visitors, BCF with
    100 draws; ``threads=None`` picks threads as ``sortition.posterior.fit`` does (``OMP_NUM_THREADS``
    when set, else every core). On a small, busy machine one thread is often fastest: stochtree's
    threads contend with anything else running.

    Returns:
        The simulation, the report path, and the DuckDB event store path (rewritten each run).
    """
    from sortition.scenarios import make_scenario
    from sortition.store import EventStore

    out = require_output_folder(out, "output folder")
    world = make_scenario(scenario, demo_arms(scenario, arms))
    store_path = out / "events.duckdb"
    require_demo_store(store_path)
    out.mkdir(parents=True, exist_ok=True)
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


def read_event_store(path: str | Path, flag: str, metric: str = "outcome", *,
                     window: float | None = None) -> pd.DataFrame:
    """Exposures to ``flag`` joined to outcomes of ``metric`` from a Sortition event store, opened
    read-only (nothing is created or written in the file).

    Columns: subject, arm, y, propensity, cell, round, then the logged subject attributes.
    ``window``: the attribution window in seconds (None: no limit).
    Raises ValueError for a missing file, an unknown flag or a metric with no outcome events.
    """
    from sortition.store import EventStore

    path = require_file(path, "event store")
    with EventStore(str(path), read_only=True) as store:
        require_flag(store, flag)
        require_metric(store, metric)
        frame = store.experiment_frame(flag, metric, window=window)
    return frame


@dataclass(frozen=True)
class AnalysisInput:
    """A user's table checked for one analysis round, in their own column names' terms.

    ``frame`` has the role columns renamed (subject, arm, outcome, propensity, cell, round) and the
    kept covariates; ``kind`` is the outcome kind (``kind_reason`` says why when it was inferred);
    ``srm`` is the sample-ratio check when propensities are known.
    """

    frame: pd.DataFrame
    arms: tuple[str, ...]
    covariates: tuple[str, ...]
    kind: str
    kind_reason: str | None
    srm: SRMResult | None
    data: ExperimentData


def prepare_analysis(
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
    outcome_kind: str | None = None,
) -> AnalysisInput:
    """Validate a user's table before any fit: columns, arms (the control is ``control``, the first
    of ``arms``, or the arm named ``control``; else ValueError), outcome kind (inferred when None:
    0/1 is binary, non-negative with many zeros is revenue, else ValueError), and the sample-ratio
    check when ``propensity`` is given. Errors name the user's columns and file lines."""
    if outcome_kind is not None and outcome_kind not in OUTCOME_KINDS:
        raise ValueError(f"outcome kind {outcome_kind!r} is unknown{did_you_mean(outcome_kind, OUTCOME_KINDS)}; "
                         f"use one of {', '.join(OUTCOME_KINDS)}")
    rows = labels_of(data)
    if arm in data.columns:  # arms are names: 1 and "1" are one arm, as in the flag's variations
        labels = data.attrs.get(ROW_LABELS)
        data = data.assign(**{arm: data[arm].where(data[arm].isna(), data[arm].astype(str))})
        data.attrs[ROW_LABELS] = labels
    checked = ExperimentData.from_frame(
        data, arm=arm, outcome=outcome, subject=subject, propensity=propensity, cell=cell, round=round,
        arms=None if arms is None else [str(a) for a in arms], control=None if control is None else str(control),
        covariates=covariates, require_control=True,
    )
    if outcome_kind is None:
        kind, reason = infer_kind(checked.outcome, outcome)
    else:
        kind, reason = outcome_kind, None
    check_outcome(checked.outcome, outcome, kind, rows=rows)
    srm = None
    if checked.propensity is not None:
        srm = srm_propensity(checked.arm_index, checked.propensity, [str(a) for a in checked.arms],
                             rounds=None if checked.round is None else np.asarray(checked.round))

    names = {"arm": arm, "outcome": outcome, "subject": subject, "propensity": propensity, "cell": cell,
             "round": round}
    kept = list(checked.covariate_names)
    if not kept:
        given = [c for c in names.values() if c is not None]
        raise ValueError(f"the data have no covariate columns besides {given}: segments are rules on "
                         "covariates (device, country, ...), so the data need at least one")
    frame = data.reset_index(drop=True)[[c for c in names.values() if c is not None] + kept]
    clash = {c: f"{c}_" for c in (*ROLE_COLUMNS, "segment") if c in kept}
    frame = frame.rename(columns=clash)  # a covariate named like a role
    frame = frame.rename(columns={col: role for role, col in names.items() if col is not None})
    frame["arm"] = frame["arm"].astype(str)
    if subject is None:
        frame.insert(0, "subject", range(len(frame)))
    return AnalysisInput(frame, tuple(str(a) for a in checked.arms), tuple(clash.get(c, c) for c in kept),
                         kind, reason, srm, checked)


def analyze(
    data: pd.DataFrame | AnalysisInput,
    *,
    engine: str = "bcf",
    threads: int | None = None,
    draws: int = 100,
    seed: int = 0,
    key: str = "sortition-experiment",
    out: str | Path = "sortition-out",
    source: str | None = None,
    **columns: Any,
) -> tuple[SequentialExperiment, Path]:
    """One round of the loop on a user's data: posterior, segments, allocation, next plan, report.

    ``data`` is a table, checked by :func:`prepare_analysis` with ``columns`` (its keywords: arm,
    outcome, subject, propensity, cell, round, arms, control, covariates, outcome_kind; a None kind is
    inferred), or an :class:`AnalysisInput` already checked.
    """
    require_output_folder(out, "output folder")  # before the fit, not after it
    if isinstance(data, AnalysisInput):
        if columns:
            raise TypeError(f"analyze: {sorted(columns)} were already applied by prepare_analysis")
        prepared = data
    else:
        prepared = prepare_analysis(data, **columns)
    frame = prepared.frame.copy()
    fit_options: dict[str, Any] = {"progress": False, "draws": draws}
    if engine == "bcf":
        fit_options["num_threads"] = threads
    experiment = SequentialExperiment(
        list(prepared.arms), key=key, outcome=prepared.kind, engine=engine, fit_options=fit_options, seed=seed,
        covariates=list(prepared.covariates),
    )
    if "round" in frame.columns:
        frame["round"] = 0  # one analysis round; the data's own rounds are not re-run
    with warnings.catch_warnings():
        # the covariates were checked (and the dropped ones named) by prepare_analysis
        warnings.simplefilter("ignore", UserWarning)
        experiment.advance(frame)
    from sortition.report import write_report

    report = write_report(out, experiment, title="Sortition analysis", source=source, srm=prepared.srm)
    return experiment, report
