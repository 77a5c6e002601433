"""``EventStore``: assignment, bandit and outcome events, configuration versions, and the joins."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sortition.store.backend import Backend, Transaction, write_with_retry
from sortition.store.configurations import ConfigurationVersion, as_document
from sortition.store.queries import check_window, decision_reward_sql, exposure_outcome_sql
from sortition.store.records import as_event_list, build_rows, dead_letter_row, to_utc, FieldError
from sortition.store.schema import CONFIGURATIONS, DEAD_LETTERS, EVENT_TABLES

if TYPE_CHECKING:
    from sortition.data import ExperimentData

# Columns of the experiment frame before the covariates (ExperimentData.from_frame reads these).
EXPERIMENT_COLUMNS = ("subject", "arm", "y", "propensity", "cell", "round")


@dataclass(frozen=True)
class AppendResult:
    """What one append did: ``inserted`` new events, ``set_aside`` refused ones (in
    ``dead_letters``, with ``invalid="set_aside"``), ``duplicates`` already stored (or repeated in
    the batch), out of ``received``."""

    received: int
    inserted: int
    set_aside: int = 0

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted - self.set_aside


def _utc_or_none(value: Any, field: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return to_utc(value, field)
    except FieldError as err:
        raise ValueError(f"{field}: {err.problem}") from None


def _decode(text: Any) -> dict:
    return json.loads(text) if isinstance(text, str) else {}


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d{2,5}/?$")


def check_location(path_or_url: str | Path) -> str:
    """A store location as text: a DuckDB path, ``:memory:`` or a ``postgresql://`` URL. ValueError for
    one that is almost certainly meant as something else (a DuckDB file would be made under its name):
    another scheme (``http://``: a running server) or a bare ``host:port``."""
    location = str(path_or_url)
    scheme = _SCHEME.match(location)
    if scheme and scheme.group(1).lower() not in ("postgresql", "postgres"):
        hint = (" (a running server: give it where a command takes one, as 'round' does, or as "
                "--server URL)" if scheme.group(1).lower() in ("http", "https") else "")
        raise ValueError(f"event store {location!r}: {scheme.group(1)}:// is not a store{hint}; give a "
                         "DuckDB file or a postgresql:// URL")
    if _HOST_PORT.match(location):
        raise ValueError(f"event store {location!r} looks like a server address, not a file; give "
                         f"http://{location.rstrip('/')} where a command takes a server, or a DuckDB file")
    return location


class EventStore:
    """Events and configuration versions in DuckDB (default) or PostgreSQL.

    Parameters
    ----------
    path_or_url : a DuckDB file path, ``":memory:"``, or a ``postgresql://`` URL (needs psycopg 3).
    shared : DuckDB only: open the file per operation so several processes can take turns writing
        it (DuckDB lets one process at a time hold a file); see ``sortition.store.duckdb_backend``.
    lock_timeout : DuckDB only: seconds to wait for a file held by another process.
    read_only : DuckDB only: open an existing event store for reading; nothing is created or
        written (a missing file, or one without the event tables, raises ValueError). The file is
        opened per query (as with ``shared``), so a reader never keeps it from writers.

    Every append is one transaction (the whole batch or nothing) and idempotent: each event has an
    id (``event_id`` or ``eventId`` in the event, else derived from its content), and an id already
    stored is skipped, so retrying a batch never duplicates anything.
    """

    def __init__(self, path_or_url: str = ":memory:", *, shared: bool = False, lock_timeout: float = 10.0,
                 read_only: bool = False):
        location = check_location(path_or_url)
        if location.startswith(("postgresql://", "postgres://")):
            from sortition.store.postgres_backend import PostgresBackend

            self._backend: Backend = PostgresBackend(location)
        else:
            from sortition.store.duckdb_backend import DuckDBBackend

            self._backend = DuckDBBackend(location, shared=shared, lock_timeout=lock_timeout, read_only=read_only)

    @property
    def dialect(self) -> str:
        """``"duckdb"`` or ``"postgresql"``."""
        return self._backend.dialect

    def __repr__(self) -> str:
        where = self._backend.location
        if self.dialect == "postgresql" and "@" in where:  # keep credentials out of reprs and logs
            where = "postgresql://…@" + where.split("@", 1)[1]
        return f"EventStore({where!r})"

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- appends ---------------------------------------------------------------------------
    def _append(self, kind: str, events: Any) -> AppendResult:
        batch = as_event_list(events, kind)
        rows = build_rows(batch, kind)  # raises before anything is written
        table = EVENT_TABLES[kind]
        inserted = write_with_retry(self._backend, lambda tx: tx.insert_new(table, rows))
        return AppendResult(received=len(batch), inserted=inserted)

    def append_assignments(self, events: Iterable[Mapping] | Mapping | pd.DataFrame) -> AppendResult:
        """Append assignment events as Eppo's SDKs log them (featureFlag, allocation, experiment,
        variation, subject, subjectAttributes, timestamp, extraLogging entries, metaData)."""
        return self._append("assignment", events)

    def append_bandit_events(self, events: Iterable[Mapping] | Mapping | pd.DataFrame) -> AppendResult:
        """Append bandit action events as Eppo's SDKs log them (flagKey, banditKey, subject, action,
        actionProbability, optimalityGap, modelVersion, the four attribute groups, timestamp, metaData)."""
        return self._append("bandit", events)

    def append_outcomes(self, events: Iterable[Mapping] | Mapping | pd.DataFrame) -> AppendResult:
        """Append outcomes: ``{subject, metric, value, timestamp, event_id?}`` dicts or a DataFrame
        with those columns. Give event ids when one subject can have two equal outcomes at the same
        timestamp: without them such events share a derived id and are stored once."""
        return self._append("outcome", events)

    def append(self, assignments: Any = (), bandit_events: Any = (), outcomes: Any = (), *,
               invalid: str = "raise") -> dict[str, AppendResult]:
        """Append events of several kinds in ONE transaction (all kinds or none).

        ``invalid="raise"`` (default): a bad event raises ValueError and nothing is written.
        ``invalid="set_aside"``: bad events (and any the engine refuses) go to ``dead_letters``
        with the reason, in the same transaction, and the good ones are stored.
        """
        if invalid not in ("raise", "set_aside"):
            raise ValueError(f"invalid must be 'raise' or 'set_aside', got {invalid!r}")
        batches = {kind: as_event_list(events, kind) for kind, events in
                   (("assignment", assignments), ("bandit", bandit_events), ("outcome", outcomes))}
        aside: list[tuple[str, Any, str]] | None = [] if invalid == "set_aside" else None
        rows = {kind: build_rows(batch, kind, aside) for kind, batch in batches.items()}

        def work(tx: Transaction) -> dict[str, int]:
            inserted = {kind: tx.insert_new(EVENT_TABLES[kind], rows[kind]) for kind in rows}
            self._insert_dead_letters(tx, aside or [])
            return inserted

        try:
            inserted = write_with_retry(self._backend, work)
        except Exception as err:  # noqa: BLE001 - re-raised unless a value the engine refuses
            if aside is None or not self._backend.is_data_error(err):
                raise
            inserted = self._append_row_by_row(rows, aside)
        refused = {kind: sum(1 for k, _, _ in aside or () if k == kind) for kind in batches}
        return {kind: AppendResult(len(batches[kind]), inserted[kind], refused[kind]) for kind in batches}

    def _insert_dead_letters(self, tx: Transaction, aside: list[tuple[str, Any, str]]) -> None:
        if aside:
            now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            tx.insert_new(DEAD_LETTERS, [dead_letter_row(kind, event, reason, now) for kind, event, reason in aside])

    def _append_row_by_row(self, rows: dict[str, list[tuple]], aside: list[tuple[str, Any, str]]) -> dict[str, int]:
        """The batch the engine refused, one row per transaction: refused rows join ``aside``."""
        inserted = {kind: 0 for kind in rows}
        for kind, kind_rows in rows.items():
            table = EVENT_TABLES[kind]
            for row in kind_rows:
                try:
                    inserted[kind] += write_with_retry(self._backend, lambda tx: tx.insert_new(table, [row]))
                except Exception as err:  # noqa: BLE001 - re-raised unless a value the engine refuses
                    if not self._backend.is_data_error(err):
                        raise
                    aside.append((kind, dict(zip(table.names, row)), f"refused by {self.dialect}: {err}"))
        write_with_retry(self._backend, lambda tx: self._insert_dead_letters(tx, aside))
        return inserted

    def dead_letters(self, kind: str | None = None) -> pd.DataFrame:
        """Events set aside by ``append(..., invalid="set_aside")`` (and ``StoreLogger``), oldest
        first: ``event_id``, ``kind``, ``reason``, ``event`` (the event as JSON text), ``received_at``."""
        where = "1 = 1" if kind is None else "kind = ?"
        return self._backend.frame(f"SELECT * FROM dead_letters WHERE {where} ORDER BY received_at, event_id",
                                   [] if kind is None else [kind])

    # ---- reading events --------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Number of stored events per kind and of configuration versions."""
        sql = " UNION ALL ".join(
            f"SELECT '{kind}' AS kind, COUNT(*) AS n FROM {table.name}"
            for kind, table in {**EVENT_TABLES, "configuration": CONFIGURATIONS}.items()
        )
        frame = self._backend.frame(sql)
        return {str(k): int(n) for k, n in zip(frame["kind"], frame["n"])}

    def event_counts(self) -> dict[str, int]:
        """Number of stored events per kind (:meth:`counts` without the configuration versions)."""
        return {kind: n for kind, n in self.counts().items() if kind in EVENT_TABLES}

    def _table(self, table: str, where: str, params: list[Any]) -> pd.DataFrame:
        frame = self._backend.frame(f"SELECT * FROM {table} WHERE {where} ORDER BY ts, event_id", params)
        return frame.rename(columns={"ts": "timestamp"})

    def flag_keys(self) -> list[str]:
        """The flag keys that have stored assignment events, sorted."""
        frame = self._backend.frame("SELECT DISTINCT flag_key FROM assignments ORDER BY flag_key")
        return [str(k) for k in frame["flag_key"]]

    def metrics(self) -> list[str]:
        """The metric names that have stored outcome events, sorted."""
        frame = self._backend.frame("SELECT DISTINCT metric FROM outcomes ORDER BY metric")
        return [str(k) for k in frame["metric"]]

    def bandit_flag_keys(self) -> list[str]:
        """The flag keys that have stored bandit events, sorted."""
        frame = self._backend.frame("SELECT DISTINCT flag_key FROM bandit_events ORDER BY flag_key")
        return [str(k) for k in frame["flag_key"]]

    def assignments(self, flag_key: str | None = None) -> pd.DataFrame:
        """Stored assignment events (one row each, JSON columns as text), oldest first."""
        return self._table("assignments", "1 = 1" if flag_key is None else "flag_key = ?",
                           [] if flag_key is None else [flag_key])

    def bandit_events(self, flag_key: str | None = None) -> pd.DataFrame:
        """Stored bandit action events (one row each, JSON columns as text), oldest first."""
        return self._table("bandit_events", "1 = 1" if flag_key is None else "flag_key = ?",
                           [] if flag_key is None else [flag_key])

    def outcomes(self, metric: str | None = None) -> pd.DataFrame:
        """Stored outcome events, oldest first."""
        return self._table("outcomes", "1 = 1" if metric is None else "metric = ?",
                           [] if metric is None else [metric])

    # ---- joins -----------------------------------------------------------------------------
    def experiment_frame(
        self, flag_key: str, metric: str, *, window: dt.timedelta | float | None = None,
        aggregate: str = "sum", since: Any = None, until: Any = None, covariates: bool = True,
        details: bool = False,
    ) -> pd.DataFrame:
        """Each subject's first exposure to ``flag_key`` joined to its outcomes of ``metric``.

        Returns one row per exposed subject (oldest exposure first) with columns ``subject``,
        ``arm`` (the variation key), ``y`` (the aggregate of the outcomes within the attribution
        window; 0 when none), ``propensity``, ``cell``, ``round`` (from the exposure's extraLogging;
        NaN/None when absent), then one column per subject attribute (``covariates=True``) holding
        the attributes logged at the first exposure. ``details=True`` adds ``allocation`` and
        ``exposed_at``. See ``sortition.store.queries`` for the attribution rules.

        ``window``: timedelta or seconds (None: no limit). ``aggregate``: "sum" (revenue), "count",
        or "conversion" (1.0 if any outcome in the window has a value > 0). ``since``/``until``:
        subjects whose first exposure is in [since, until), and only outcomes before ``until``.
        """
        sql, params = exposure_outcome_sql(
            flag_key, metric, check_window(window), aggregate,
            _utc_or_none(since, "since"), _utc_or_none(until, "until"),
        )
        joined = self._backend.frame(sql, params)
        frame = pd.DataFrame({
            "subject": joined["subject"].astype(object),
            "arm": joined["arm"].astype(object),
            "y": pd.to_numeric(joined["y"]).astype("float64"),
            "propensity": pd.to_numeric(joined["propensity"]).astype("float64"),
            "cell": joined["cell"].astype(object).where(joined["cell"].notna(), None),
            "round": pd.to_numeric(joined["round"]).astype("Int64"),
        })
        if details:
            frame["allocation"] = joined["allocation"].astype(object)
            frame["exposed_at"] = pd.to_datetime(joined["exposed_at"])
        if covariates:
            attributes = pd.DataFrame.from_records(
                [_decode(text) for text in joined["subject_attributes"]], index=frame.index
            )
            clashes = [c for c in attributes.columns if c in frame.columns]
            if clashes:
                raise ValueError(
                    f"subject attribute(s) {clashes} clash with the experiment columns "
                    f"{list(frame.columns)}; rename them at logging time or pass covariates=False"
                )
            frame = pd.concat([frame, attributes], axis=1)
        return frame

    def experiment_data(
        self, flag_key: str, metric: str, *, window: dt.timedelta | float | None = None,
        aggregate: str = "sum", since: Any = None, until: Any = None, arms: Any = None,
        control: Any = None, covariates: bool = True,
    ) -> ExperimentData:
        """``experiment_frame(...)`` as a validated ``ExperimentData`` (arms control first).

        ``arms``/``control`` are passed to ``ExperimentData.from_frame``. Propensity and round are
        used when every exposure logged them, and left out when none did; a mix raises, because
        weighting some rows and not others would bias the estimates. Cell is carried when logged.
        """
        from sortition.data import ExperimentData

        frame = self.experiment_frame(flag_key, metric, window=window, aggregate=aggregate,
                                      since=since, until=until, covariates=covariates)
        if frame.empty:
            raise ValueError(f"no exposures to flag {flag_key!r} are stored"
                             + ("" if since is None and until is None else " in the given time range"))
        roles: dict[str, str | None] = {}
        for role in ("propensity", "round"):
            missing = frame[role].isna()
            if missing.all():
                roles[role] = None
            elif missing.any():
                rows = frame.loc[missing, "subject"].tolist()[:5]
                raise ValueError(
                    f"{int(missing.sum())} of {len(frame)} exposures to {flag_key!r} have no {role!r} in "
                    f"their extraLogging (first subjects: {rows}); log it with every assignment, or select "
                    "a time range (since/until) where all exposures have it"
                )
            else:
                roles[role] = role
        if roles["round"] is not None:
            frame["round"] = frame["round"].astype("int64")
        cell = "cell" if frame["cell"].notna().any() else None
        extra = [c for c in EXPERIMENT_COLUMNS if c not in ("subject", "arm", "y") and c not in roles.values()
                 and c != cell]
        return ExperimentData.from_frame(
            frame.drop(columns=extra), arm="arm", outcome="y", subject="subject", arms=arms,
            control=control, covariates=[c for c in frame.columns if c not in EXPERIMENT_COLUMNS],
            propensity=roles["propensity"], cell=cell, round=roles["round"],
        )

    def bandit_rewards(
        self, metric: str, *, flag_key: str | None = None, bandit_key: str | None = None,
        window: dt.timedelta | float | None = None, aggregate: str = "sum", until: Any = None,
    ) -> pd.DataFrame:
        """Bandit decisions joined to rewards: one row per stored bandit event, oldest first.

        Columns: ``event_id``, ``timestamp``, ``flag_key``, ``bandit_key``, ``model_version``,
        ``subject``, ``action``, ``action_probability``, ``optimality_gap``, the four attribute
        groups as dicts (``subject_numeric_attributes``, ``subject_categorical_attributes``,
        ``action_numeric_attributes``, ``action_categorical_attributes``), ``offered_actions`` (every
        action offered at the decision, ``{action: {"numericAttributes": ..., "categoricalAttributes":
        ...}}``, or None for events logged without them) and ``reward``: the aggregate of the
        subject's outcomes of ``metric`` attributed to this decision (each outcome goes to the
        subject's latest decision at or before it, within ``window``; 0 when none).
        """
        sql, params = decision_reward_sql(
            flag_key, bandit_key, metric, check_window(window), aggregate, _utc_or_none(until, "until")
        )
        frame = self._backend.frame(sql, params)
        for name in ("subject_numeric_attributes", "subject_categorical_attributes",
                     "action_numeric_attributes", "action_categorical_attributes"):
            frame[name] = [_decode(text) for text in frame[name]]
        frame["offered_actions"] = [
            json.loads(t) if isinstance(t, str) else None for t in frame["offered_actions"]
        ]
        for name in ("action_probability", "optimality_gap", "reward"):
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        return frame

    # ---- configurations --------------------------------------------------------------------
    def save_configuration(
        self, flags: Mapping | str, bandits: Mapping | str | None = None, *,
        version: int | None = None, created_at: Any = None,
    ) -> ConfigurationVersion:
        """Store a configuration (UFC flags JSON, optional bandit models JSON) as a new version.

        ``version=None`` takes the next number (1 for the first). Saving an existing version again
        with the same content returns it unchanged (a retry); with other content it raises.
        """
        flags_doc, flags_text = as_document(flags, "flags")
        bandits_doc, bandits_text = as_document(bandits, "bandits", required=False)
        # Catch a swapped or wrapped document (e.g. Eppo's wire wrapper) before it is stored.
        if not isinstance(flags_doc.get("flags"), dict):
            raise ValueError("flags must be a UFC flags document with a 'flags' object "
                             f"(got keys {sorted(flags_doc)[:6]})")
        if bandits_doc is not None and not isinstance(bandits_doc.get("bandits"), dict):
            raise ValueError("bandits must be a bandit-models document with a 'bandits' object "
                             f"(got keys {sorted(bandits_doc)[:6]})")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValueError(f"version must be a positive integer, got {version!r}")
        stamp = _utc_or_none(created_at, "created_at") or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

        def work(tx: Transaction) -> int:
            number = version
            if number is None:
                number = int(tx.fetch("SELECT COALESCE(MAX(version), 0) + 1 FROM configurations")[0][0])
            else:
                existing = tx.fetch("SELECT flags, bandits FROM configurations WHERE version = ?", [number])
                if existing:
                    if tuple(existing[0]) != (flags_text, bandits_text):
                        raise ValueError(f"configuration version {number} already exists with other "
                                         "content; save without a version to get the next number")
                    return number
            tx.execute("INSERT INTO configurations (version, created_at, flags, bandits) VALUES (?, ?, ?, ?)",
                       [number, stamp, flags_text, bandits_text])
            return number

        return self.configuration(write_with_retry(self._backend, work))

    def configuration(self, version: int | None = None) -> ConfigurationVersion:
        """A saved configuration: the given version, or the latest. Raises LookupError if absent."""
        if version is None:
            frame = self._backend.frame("SELECT * FROM configurations ORDER BY version DESC LIMIT 1")
        else:
            frame = self._backend.frame("SELECT * FROM configurations WHERE version = ?", [int(version)])
        if frame.empty:
            saved = self.configuration_versions()
            raise LookupError(
                "no configuration has been saved" if version is None and not saved else
                f"configuration version {version} does not exist (saved versions: {saved[:10]}"
                f"{'…' if len(saved) > 10 else ''})"
            )
        row = frame.iloc[0]
        bandits = row["bandits"]
        return ConfigurationVersion(
            version=int(row["version"]),
            created_at=pd.Timestamp(row["created_at"]).to_pydatetime(),
            flags=json.loads(row["flags"]),
            bandits=json.loads(bandits) if isinstance(bandits, str) else None,
        )

    def configuration_versions(self) -> list[int]:
        """Saved version numbers, oldest first."""
        frame = self._backend.frame("SELECT version FROM configurations ORDER BY version")
        return [int(v) for v in frame["version"]]
