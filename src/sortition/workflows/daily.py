"""One round per run, in separate processes: the flow behind ``sortition round``.

Each run loads the experiment's saved state, reads the exposures to the flag (joined to their
outcomes) that the experiment has not read yet from the event store, advances one round, saves
the next configuration as a new version in the store, saves the state, and writes the report.
The first run (``arms`` given, no state file yet) creates the experiment and saves the round-0
configuration to serve; if exposures are already stored it also runs the first round.

Nothing is saved unless the round succeeded: a failing fit, bad data or no new data leave the
state file and the store's configurations as they were.

A round is all-or-nothing, in this order: the state is written first (atomically: it is the commit
of the round), the configuration is published second. A run killed between the two leaves a
committed round whose plan is not served yet; the next run sees that (the store's latest entry for
the flag is not the state's plan), publishes exactly that plan and stops there. The other order
could leave a published plan that no state ever committed, which serving processes would serve and
a rerun would replace with a second, different round-N plan. See docs/experiment.md.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sortition.data.files import require_file, require_output_folder
from sortition.names import did_you_mean, listing
from sortition.experiment.results import RoundResult
from sortition.experiment.sequential import SequentialExperiment
from sortition.experiment.srm import SRMResult, srm_plan
from sortition.store.records import ROUND_KEY
from sortition.workflows.guards import refuse_near_flag, require_metric

# how a kind of outcome aggregates a subject's outcome events in the attribution window
AGGREGATES = {"revenue": "sum", "continuous": "sum", "binary": "conversion"}


@dataclass(frozen=True)
class DailyRound:
    """What one run did."""

    experiment: SequentialExperiment
    created: bool  # this run created the experiment
    result: RoundResult | None  # None when no round ran (a new experiment with no data yet)
    n_new: int  # exposures read this run
    configuration_version: int  # the store's version holding the configuration to serve next
    state: Path
    report: Path | None
    # True when this run found a committed round whose plan a killed run had not published, and
    # published it (no new round ran; ``result`` is that committed round's).
    recovered: bool = False
    srm: SRMResult | None = None  # the sample-ratio check of the rows read (None: no rows)
    other_flags: tuple[str, ...] = ()  # the store configuration's other flags (kept beside this one)


class SampleRatioMismatch(ValueError):
    """The round's rows do not follow the plan that served them; nothing was saved."""

    def __init__(self, srm: SRMResult):
        super().__init__(f"{srm.describe()}. Nothing was saved or published: find the cause (bot filters, "
                         "redirects, logging that depends on the arm), or rerun with --allow-srm to publish "
                         "anyway")
        self.srm = srm


def default_state_path(store: str | Path, flag: str) -> Path:
    """Where the state lives without ``--state``: beside a DuckDB store file, else in
    ``./sortition-state/``; never inside the (disposable) report folder. The file name is the flag
    key with anything but letters, digits, ``.``, ``_`` and ``-`` replaced, so a key such as
    ``../../x`` cannot point outside that folder."""
    text = str(store)
    local = not text.startswith(("postgresql://", "postgres://")) and text != ":memory:"
    folder = Path(text).resolve().parent if local else Path("sortition-state")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", flag).lstrip(".") or "flag"
    return folder / f"{name}.state.json"


def _open_store(location: str | Path, create: bool) -> Any:
    from sortition.store import EventStore

    location = str(location)
    if location.startswith(("postgresql://", "postgres://")):
        return EventStore(location)
    if not create and location != ":memory:":
        try:
            require_file(location, "event store")
        except ValueError as err:
            raise ValueError(
                f"{err}; give the DuckDB file (or postgresql:// URL) your assignment logger writes to (the "
                "first run, with --arms, creates it)"
            ) from None
    return EventStore(location, shared=True)  # a serving process may be writing the same file


def _new_rows(frame: pd.DataFrame, experiment: SequentialExperiment, flag: str) -> pd.DataFrame:
    """The exposures the experiment has not read yet, as ``advance`` rows."""
    seen = set() if experiment.data_ is None else set(experiment.data_["subject"].astype(str))
    rows = frame[~frame["subject"].astype(str).isin(seen)].rename(columns={"y": "outcome"})
    rows = rows.reset_index(drop=True)
    unknown = sorted(set(rows["arm"].astype(str)) - set(experiment.arms))
    if unknown:
        raise ValueError(
            f"exposures to flag {flag!r} have variations {unknown} that are not the experiment's arms "
            f"{list(experiment.arms)} (arms mismatch): the state belongs to another experiment, or the flag "
            "was served from a configuration this experiment did not export"
        )
    missing = rows["propensity"].isna()
    if missing.any():
        first = rows.loc[missing, "subject"].tolist()[:5]
        raise ValueError(
            f"{int(missing.sum())} of {len(rows)} new exposures to {flag!r} have no 'propensity' in their "
            f"extraLogging (first subjects: {first}); serve the configuration this command saved to the "
            "store (its splits log the propensity) and log assignments with their extraLogging"
        )
    if rows["round"].isna().all():
        rows = rows.drop(columns=["round"])  # advance() puts them in the current round
    else:
        rows["round"] = rows["round"].fillna(experiment.round_).astype("int64")
    rows["cell"] = rows["cell"].where(rows["cell"].notna(), "unknown")
    return rows


def _published_flag(store: Any, flag: str) -> Any:
    """The latest stored configuration's entry for ``flag`` (None when there is none)."""
    try:
        return store.configuration().flags.get("flags", {}).get(flag)
    except LookupError:
        return None


def plan_rounds(entry: Any) -> set[int]:
    """The round numbers a flag entry's splits log (the ``round`` extraLogging entries the export writes)."""
    found: set[int] = set()
    if isinstance(entry, Mapping):
        for key, value in entry.items():
            if key == ROUND_KEY and isinstance(value, str) and value.isdigit():
                found.add(int(value))
            else:
                found |= plan_rounds(value)
    elif isinstance(entry, list):
        for value in entry:
            found |= plan_rounds(value)
    return found


def _is_published(store: Any, experiment: SequentialExperiment, state: Path) -> bool:
    """Whether the store's latest configuration serves the state's current plan for the flag.

    Raises ValueError when the store serves a later round than the state committed (rounds against
    the store): the state is older than what is served, and running it would fork the experiment.
    """
    entry = _published_flag(store, experiment.key)
    served = max(plan_rounds(entry), default=None)
    if served is not None and served > experiment.round_:
        raise ValueError(
            f"the store serves round {served} of flag {experiment.key!r}, but the state {str(state)!r} "
            f"is at round {experiment.round_}: the state is older than the store (restored from a backup, "
            "or another state file). Point --state at the current state file, or roll the store back to "
            "the version this state published"
        )
    planned = json.loads(json.dumps(experiment.configuration()["flags"][experiment.key]))
    return entry == planned


def _check_rounds(frame: pd.DataFrame, experiment: SequentialExperiment, state: Path) -> None:
    """Refuse a state that is older than the exposures in the store (rounds against the store)."""
    if "round" not in frame or not frame["round"].notna().any():
        return
    latest = int(frame["round"].max())
    if latest > experiment.round_:
        raise ValueError(
            f"the store has exposures to flag {experiment.key!r} logged in round {latest}, but the state "
            f"{str(state)!r} is at round {experiment.round_}: the state is older than the plans served "
            "(restored from a backup, or another state file). Point --state at the current state file"
        )


def _save_configuration(store: Any, experiment: SequentialExperiment) -> int:
    """Save the experiment's next configuration as a new store version, keeping the other flags
    of the latest version (the store's versions are whole configurations)."""
    config = experiment.configuration()
    try:
        latest = store.configuration()
    except LookupError:
        latest = None
    bandits = None
    if latest is not None:
        flags = {**latest.flags.get("flags", {}), **config["flags"]}
        config = {**latest.flags, **config, "flags": flags}
        bandits = latest.bandits
    return store.save_configuration(config, bandits).version


def daily_round(
    store: str | Path,
    flag: str,
    metric: str,
    *,
    state: str | Path,
    outcome: str | None = None,
    arms: Sequence[str] | None = None,
    engine: str = "bcf",
    threads: int | None = None,
    draws: int = 100,
    seed: int = 0,
    window: dt.timedelta | float | None = None,
    aggregate: str | None = None,
    out: str | Path | None = None,
    publish: str | None = None,
    allow_srm: bool = False,
    new_flag: bool = False,
) -> DailyRound:
    """Run one round of the experiment saved at ``state`` on the new data in ``store``.

    Args:
        store: the event store (DuckDB file or ``postgresql://`` URL) the assignments are logged to.
        flag: the flag (experiment) key.
        metric: the outcome metric joined to the exposures.
        state: the experiment's state file (created on the first run).
        outcome: "revenue", "continuous" or "binary"; required to create, checked afterwards.
        arms: arms, control first; required to create, checked afterwards.
        engine, threads, draws, seed: the posterior's settings (used when creating; saved in the state).
        window: attribution window (timedelta or seconds; None: no limit).
        aggregate: "sum", "count" or "conversion" (default by ``outcome``: conversion for binary).
        out: folder of the round archive (``OUT/round-NNNN/index.html`` and ``OUT/index.html``;
            None: no report).
        publish: an environment name: serve the round's configuration there once the state is saved.
        allow_srm: publish even when the sample-ratio check of the new rows fails.
        new_flag: create the experiment even when its flag key is close to one of the store's flags.
    Raises:
        ValueError: with what to fix (no state and no arms, arms or kind mismatch, unknown flag or
            metric, a flag key close to another one, no new exposures, bad data). Nothing is saved then.
        SampleRatioMismatch: the new rows do not follow the plan that served them (a ValueError);
            nothing is saved or published unless ``allow_srm``.
    """
    state = Path(state)
    # before the round (and before a first run creates the store): these would fail only at its end
    if state.is_dir():
        raise ValueError(f"--state {str(state)!r} is a folder; give the state file's name, such as "
                         f"{str(state / f'{flag}.state.json')!r}")
    require_output_folder(state.parent, "--state's folder")
    if out is not None:
        require_output_folder(out, "output folder")
    if outcome is not None and outcome not in AGGREGATES:
        raise ValueError(f"outcome kind {outcome!r} is unknown; use one of {sorted(AGGREGATES)} (--kind)")
    arms = None if arms is None else tuple(str(a) for a in arms)
    if state.exists():
        experiment = SequentialExperiment.load(state)
        created = False
        if experiment.key != flag:
            raise ValueError(
                f"the state {str(state)!r} is flag {experiment.key!r}'s experiment, not {flag!r}; "
                "give each flag its own --state file"
            )
        if arms is not None and arms != experiment.arms:
            raise ValueError(
                f"arms mismatch: the saved experiment has arms {list(experiment.arms)}, "
                f"--arms gave {list(arms)}; drop --arms (it is only needed to create one)"
            )
        if outcome is not None and outcome != experiment.outcome:
            raise ValueError(
                f"the saved experiment's outcome kind is {experiment.outcome!r}, not {outcome!r}"
            )
    else:
        if arms is None:
            raise ValueError(
                f"no experiment state at {str(state)!r}: start one with --arms control,treatment,... "
                "(control first), or point --state at the existing file"
            )
        if outcome is None:
            raise ValueError(
                "creating an experiment needs its outcome kind: --kind revenue, continuous or binary"
            )
        fit_options: dict[str, Any] = {"progress": False, "draws": draws}
        if engine == "bcf":
            fit_options["num_threads"] = threads
        experiment = SequentialExperiment(
            arms, key=flag, outcome=outcome, engine=engine, fit_options=fit_options, seed=seed
        )
        created = True
    aggregate = aggregate or AGGREGATES.get(experiment.outcome, "sum")

    with _open_store(store, create=created) as events:
        if not created and not _is_published(events, experiment, state):
            # a run was killed after committing its round and before publishing it: finish that one
            version = _save_and_publish(events, experiment, publish)
            report = _write_report(out, experiment, flag, metric, repr(events))
            last = experiment.results_[-1] if experiment.results_ else None
            return DailyRound(experiment, False, last, 0, version, state, report, recovered=True)
        others = _other_flags(events, flag)
        if created:
            refuse_near_flag(flag, list(others), allow_new=new_flag)
        frame = events.experiment_frame(flag, metric, window=window, aggregate=aggregate)
        if not frame.empty:
            require_metric(events, metric)  # else every outcome reads as 0
        if not created:
            _check_rounds(frame, experiment, state)
        if frame.empty and not created:
            known = events.flag_keys()
            raise ValueError(
                f"the event store has no exposures to flag {flag!r}{did_you_mean(flag, known)} (flags with "
                f"exposures: {listing(known)}); check --flag, or serve the latest configuration in the store "
                "and log its assignments first"
            )
        rows = _new_rows(frame, experiment, flag)
        result = None
        if len(rows) == 0 and not created:
            raise ValueError(
                f"no new exposures to flag {flag!r} since round {experiment.round_} "
                f"({len(frame):,} exposures already read); serve the latest configuration and log its "
                "assignments, then run this again"
            )
        srm = srm_plan(experiment.plans_, rows) if len(rows) else None
        if srm is not None and not srm.ok and not allow_srm:
            raise SampleRatioMismatch(srm)
        if len(rows):
            result = experiment.advance(rows)  # raises -> nothing below runs, nothing is saved
        experiment.save(state)  # the commit of the round: before anything is published
        version = _save_and_publish(events, experiment, publish)
        where = repr(events)  # credentials of a PostgreSQL URL stay out of the report
    report = _write_report(out, experiment, flag, metric, where, srm)
    return DailyRound(experiment, created, result, len(rows), version, state, report, srm=srm,
                      other_flags=others)


def _other_flags(events: Any, flag: str) -> tuple[str, ...]:
    """The flags other than ``flag`` in the store's latest configuration or with exposures."""
    try:
        configured = set(events.configuration().flags.get("flags", {}))
    except LookupError:
        configured = set()
    return tuple(sorted((configured | set(events.flag_keys())) - {flag}))


def _save_and_publish(events: Any, experiment: SequentialExperiment, publish: str | None) -> int:
    """Save the next configuration (after the state); with ``publish``, serve it in that environment."""
    version = _save_configuration(events, experiment)
    if publish is not None:
        from sortition.store.publishing import publish_round

        publish_round(events, version, publish, experiment.key)
    return version


def _write_report(out: str | Path | None, experiment: SequentialExperiment, flag: str, metric: str,
                  where: str, srm: SRMResult | None = None) -> Path | None:
    if out is None or not experiment.results_:
        return None
    from sortition.report.archive import write_round

    return write_round(  # OUT/round-NNNN/index.html and the OUT/index.html that links every round
        out,
        experiment,
        title=f"Sortition: {flag}, round {experiment.results_[-1].number}",
        index_title=f"Sortition: {flag}",
        source=f"{where}, metric {metric!r}",  # repr(store): a PostgreSQL URL's credentials stay out
        srm=srm,
    )
