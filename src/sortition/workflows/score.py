"""Score a whole audience offline: one flag (and its bandit) for every row of a file or query.

``score_audience`` streams the input in batches (Parquet row groups, CSV blocks, a DuckDB
result in record batches), scores each batch with the columnar call
(:meth:`sortition.serving.Client.assign_table` / ``bandit_table``) and appends it to a Parquet
file written under a temporary name and renamed at the end, so a failed run leaves nothing
behind. Memory is bounded by the batch size, not the audience.

With Dask (``pip install sortition[dask]``), the batches are scored on a cluster -- a
``LocalCluster`` of ``workers`` processes, or an existing scheduler -- by the same columnar
call; results come back in input order, so the output is identical, row for row, to the
single-process run. At most ``2 * workers`` batches are in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sortition.data.files import duckdb_message, duckdb_select, require_output_file
from sortition.names import did_you_mean
from sortition.serving import Client, Configuration
from sortition.serving.columnar import require_column
from sortition.userfiles import read_json, read_text

DEFAULT_BATCH_ROWS = 100_000
# Output names that promise another format: a user who asks for out.csv would get Parquet bytes.
_NOT_PARQUET = frozenset({".csv", ".tsv", ".txt", ".gz", ".json", ".jsonl", ".ndjson", ".duckdb", ".db",
                          ".xlsx", ".xls", ".feather", ".arrow", ".orc", ".avro"})


@dataclass(frozen=True)
class ScoreJob:
    """What to score: configuration texts (shipped to workers as is), the flag, the action set.

    ``actions`` is ``None`` for flag assignments, else the bandit's action set
    (``{action_key: attributes}``) shared by every row.
    """

    flags_json: str
    flag: str
    subject: str = "subject"
    default: Any = None
    bandits_json: str | None = None
    actions: dict[str, Any] | None = None
    chunk_size: int | None = None

    def client(self) -> Client:
        key = sha256(self.flags_json.encode() + b"\0" + (self.bandits_json or "").encode()).hexdigest()
        client = _CLIENTS.get(key)
        if client is None:
            _CLIENTS.clear()  # one configuration per worker at a time
            client = _CLIENTS[key] = Client(Configuration.from_json(self.flags_json, self.bandits_json))
        return client


_CLIENTS: dict[str, Client] = {}


def score_batch(job: ScoreJob, batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """One batch through the columnar call (also what a Dask worker or a Spark ``mapInArrow``
    function runs)."""
    client = job.client()
    if job.actions is None:
        return client.assign_table(job.flag, batch, subject=job.subject, default=job.default,
                                   chunk_size=job.chunk_size)
    return client.bandit_table(job.flag, batch, job.actions, subject=job.subject, default=job.default,
                               chunk_size=job.chunk_size)


def _score_row_group(job: ScoreJob, path: str, index: int, columns: list[str] | None) -> pa.Table:
    return score_batch(job, pq.ParquetFile(path).read_row_group(index, columns=columns))


@dataclass
class Source:
    """The input: a Parquet or CSV file, or a DuckDB database with a table name or a query."""

    path: Path
    table: str | None = None
    query: str | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")
        if not self.path.exists():
            raise ValueError(f"input {self.path} does not exist")
        suffix = self.path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            self.kind = "parquet"
        elif suffix in (".csv", ".txt"):
            self.kind = "csv"
        elif suffix in (".duckdb", ".db", ".ddb"):
            self.kind = "duckdb"
            if (self.table is None) == (self.query is None):
                raise ValueError(f"input {self.path} is a DuckDB database: give --table NAME or --query SQL "
                                 "(one of them)")
        else:
            raise ValueError(f"input {self.path}: unknown format {suffix or '(no suffix)'}; "
                             "expected .parquet, .csv or a DuckDB database (.duckdb)")
        if self.kind != "duckdb" and (self.table is not None or self.query is not None):
            raise ValueError(f"--table/--query apply to a DuckDB input, not to {self.path}")

    def total_rows(self) -> int | None:
        if self.kind == "parquet":
            return pq.ParquetFile(self.path).metadata.num_rows
        return None

    def schema_names(self) -> list[str]:
        """The input's column names (read without scoring anything)."""
        if self.kind == "parquet":
            return pq.ParquetFile(self.path).schema_arrow.names
        with self.batches(limit=0) as reader:
            return reader.schema.names

    @contextmanager
    def batches(self, limit: int | None = None) -> Iterator[Iterator[pa.RecordBatch]]:
        """A reader of record batches of at most about ``batch_rows`` rows, streamed (``limit``:
        only the schema is needed, DuckDB runs the query with ``LIMIT``)."""
        if self.kind == "parquet":
            yield pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows)
        elif self.kind == "csv":
            from pyarrow import csv

            block = max(1 << 20, self.batch_rows * 64)  # bytes per block: about batch_rows short rows
            try:
                yield csv.open_csv(self.path, read_options=csv.ReadOptions(block_size=block))
            except pa.ArrowInvalid as exc:
                raise ValueError(f"input {self.path}: {exc}") from None
        else:
            import duckdb

            from sortition.data.locks import open_error

            try:
                con = duckdb.connect(str(self.path), read_only=True)
            except duckdb.Error as exc:
                raise open_error(exc, str(self.path)) from None
            try:
                sql = duckdb_select(con, self.path, self.query, self.table)
                if limit is not None:
                    sql = f"SELECT * FROM ({sql}) LIMIT {int(limit)}"
                try:
                    reader = con.sql(sql).to_arrow_reader(self.batch_rows)
                except duckdb.Error as exc:
                    raise ValueError(f"input {self.path}: {duckdb_message(exc)}") from None
                yield reader
            finally:
                con.close()


def load_job(config: Path, flag: str, *, subject: str = "subject", default: Any = None,
             bandits: Path | None = None, actions: Path | None = None,
             chunk_size: int | None = None) -> ScoreJob:
    """Read and check the configuration files; refuse a flag it lacks, naming the nearest."""
    flags_json = read_text(config, "configuration file")
    bandits_json = None if bandits is None else read_text(bandits, "bandit models file")
    if (bandits is None) != (actions is None):
        raise ValueError("--bandits and --actions go together: give both to score bandit actions, "
                         "neither for flags")
    try:
        cfg = Configuration.from_json(flags_json, bandits_json)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{config}: {exc}") from None
    if cfg.get_flag(flag) is None:
        known = sorted(cfg.flag_keys())
        raise ValueError(f"flag {flag!r} is not in {config} ({len(known)} flags){did_you_mean(flag, known)}")
    action_map = None
    if actions is not None:
        action_map = read_json(actions, "actions file")
        if isinstance(action_map, list) and all(isinstance(a, str) for a in action_map):
            action_map = {a: None for a in action_map}
        if not isinstance(action_map, dict) or not action_map:
            raise ValueError(f"{actions}: expected a non-empty object {{action_key: {{attribute: value}}}} "
                             "or a list of action keys")
    return ScoreJob(flags_json, flag, subject, default, bandits_json, action_map, chunk_size)


def score_audience(job: ScoreJob, source: Source, output: Path, *, workers: int | None = None,
                   scheduler: str | None = None, processes: bool = True,
                   progress: Callable[[int], None] | None = None) -> int:
    """Score every input row into ``output`` (Parquet, written atomically); the number of rows.

    Args:
        workers: start a Dask ``LocalCluster`` with this many single-threaded workers.
        scheduler: address of a running Dask scheduler (instead of ``workers``).
        processes: ``LocalCluster`` workers as processes (``False``: threads, for tests).
        progress: called with the number of rows of each batch written.

    Raises:
        ValueError: a missing subject column, an output that is the input, bad options.
    """
    output = Path(output)
    if output.resolve() == source.path.resolve():
        raise ValueError(f"output {output} is the input: write the scores to another file")
    if workers is not None and scheduler is not None:
        raise ValueError("give --workers (start a local cluster) or --scheduler (use one), not both")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    require_output_file(output, "output", "scores.parquet")
    if output.suffix.lower() in _NOT_PARQUET:
        raise ValueError(f"output {str(output)!r}: the scores are written as Parquet, not {output.suffix}; "
                         f"name it {str(output.with_suffix('.parquet'))!r}")
    require_column(source.schema_names(), job.subject, "subject")
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with ExitStack() as stack:
            writer: pq.ParquetWriter | None = None
            for table in _scored(job, source, workers, scheduler, processes, stack):
                if writer is None:
                    writer = stack.enter_context(pq.ParquetWriter(tmp, table.schema))
                writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
                rows += table.num_rows
                if progress is not None:
                    progress(table.num_rows)
            if writer is None:  # an empty input: an empty file with the score's columns
                empty = score_batch(job, pa.table({job.subject: pa.array([], type=pa.string())}))
                stack.enter_context(pq.ParquetWriter(tmp, empty.schema)).write_table(empty)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return rows


def _scored(job: ScoreJob, source: Source, workers: int | None, scheduler: str | None, processes: bool,
            stack: ExitStack) -> Iterator[pa.Table]:
    if workers is None and scheduler is None:
        with source.batches() as batches:
            for batch in batches:
                yield score_batch(job, batch)
        return
    try:
        from dask.distributed import Client as DaskClient, LocalCluster
    except ImportError:
        raise ValueError("--workers/--scheduler need Dask: pip install 'sortition[dask]'") from None
    if scheduler is not None:
        dask = stack.enter_context(DaskClient(scheduler))
    else:
        where = {"host": "127.0.0.1"} if processes else {}  # loopback only (threads: in-process transport)
        cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1,
                                                   processes=processes, dashboard_address="127.0.0.1:0",
                                                   **where))
        dask = stack.enter_context(DaskClient(cluster))
    window = 2 * max(1, len(dask.scheduler_info().get("workers", {})) or (workers or 1))
    yield from _in_order(dask, _tasks(dask, job, source), window)


def _tasks(dask: Any, job: ScoreJob, source: Source) -> Iterator[Any]:
    """Futures, in input order: Parquet row groups are read by the workers; other inputs are
    read here and shipped batch by batch."""
    if source.kind == "parquet":
        groups = pq.ParquetFile(source.path).metadata.num_row_groups
        path = str(source.path.resolve())
        for i in range(groups):
            yield dask.submit(_score_row_group, job, path, i, None, pure=False)
        return
    with source.batches() as batches:
        for batch in batches:
            yield dask.submit(score_batch, job, pa.Table.from_batches([batch]), pure=False)


def _in_order(dask: Any, futures: Iterator[Any], window: int) -> Iterator[pa.Table]:
    pending: list[Any] = []
    for future in futures:
        pending.append(future)
        if len(pending) >= window:
            yield pending.pop(0).result()
    while pending:
        yield pending.pop(0).result()
