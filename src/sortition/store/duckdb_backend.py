"""DuckDB backend: an embedded file (or ``:memory:``).

Concurrency model. DuckDB lets one process at a time open a file for writing, and one connection
object must not be used by two threads at once. So:
- threads: each store holds one connection behind a lock; appends from many threads are serialized
  (each batch is one transaction) and none is lost;
- several stores on the same file in one process share DuckDB's database instance; their concurrent
  transactions may conflict, and a conflicting batch is retried (appends are idempotent);
- processes: with ``shared=True`` the store opens the file for each operation and closes it after,
  waiting (up to ``lock_timeout`` seconds) while another process holds it, so several processes can
  take turns writing one file. Without it, the first process keeps the file and others wait for it at
  open time, then fail with a message saying what to do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from sortition.store.errors import StoreLockedError, lock_holder, open_error
from sortition.store.schema import EVENT_TABLES, TABLES, Table, create_statements, upgrade_statements

_ARROW_TYPES = {"text": pa.string(), "float": pa.float64(), "int": pa.int32(), "timestamp": pa.timestamp("us")}


class DuckDBTransaction:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def insert_new(self, table: Table, rows: Sequence[tuple]) -> int:
        if not rows:
            return 0
        columns = list(zip(*rows))
        staged = pa.table(
            {c.name: pa.array(values, type=_ARROW_TYPES[c.kind]) for c, values in zip(table.columns, columns)}
        )
        name = f"_sortition_staged_{table.name}"
        self._con.register(name, staged)
        try:
            cols = ", ".join(table.names)
            result = self._con.execute(
                f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {name} ON CONFLICT DO NOTHING"
            ).fetchone()
        except BaseException:
            try:  # in an aborted transaction this fails too; keep the insert's own error
                self._con.unregister(name)
            except duckdb.Error:
                pass
            raise
        self._con.unregister(name)
        return int(result[0]) if result else 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(sql, list(params))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._con.execute(sql, list(params)).fetchall()


class DuckDBBackend:
    dialect = "duckdb"

    def __init__(self, path: str, shared: bool = False, lock_timeout: float = 10.0, read_only: bool = False):
        self.location = str(path)
        self._memory = self.location == ":memory:"
        self.read_only = bool(read_only) and not self._memory
        # a :memory: database exists only while open; a reader never keeps the file from writers
        self.shared = (bool(shared) or self.read_only) and not self._memory
        self.lock_timeout = float(lock_timeout)
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        if self.read_only:
            self._check_event_store()
            return
        with self._connection() as con:
            for statement in create_statements(indexes=False):
                con.execute(statement)
            present = {t.name: {d[0] for d in con.execute(f"SELECT * FROM {t.name} LIMIT 0").description}
                       for t in TABLES}
            for statement in upgrade_statements(present):
                con.execute(statement)

    def _check_event_store(self) -> None:
        """Read-only: the file must exist and hold the event tables (nothing is created in it)."""
        from pathlib import Path

        if not Path(self.location).is_file():
            raise ValueError(f"event store {self.location!r} does not exist")
        with self._connection() as con:
            names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        lacking = [t.name for t in EVENT_TABLES.values() if t.name not in names]
        if lacking:
            raise ValueError(
                f"{self.location!r} is not a Sortition event store (it has no {', '.join(lacking)} table"
                f"{'s' if len(lacking) > 1 else ''}; tables: {sorted(names)[:10]})"
            )

    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.01
        while True:
            try:
                return duckdb.connect(self.location, read_only=self.read_only)
            except duckdb.IOException as err:
                if "lock" not in str(err).lower():
                    raise open_error(err, self.location) from None
                if time.monotonic() >= deadline:
                    holder = lock_holder(str(err)) or "another process"
                    raise StoreLockedError(
                        f"the DuckDB file {self.location!r} is held by {holder} (waited "
                        f"{self.lock_timeout:g} s). DuckDB lets one process at a time write a file: stop or "
                        "wait for that process, open the store with EventStore(path, shared=True) in every "
                        "process, or use PostgreSQL for many writers."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self.shared:
                con = self._open()
                try:
                    yield con
                finally:
                    con.close()
            else:
                if self._con is None:
                    self._con = self._open()
                yield self._con

    @contextmanager
    def transaction(self) -> Iterator[DuckDBTransaction]:
        with self._connection() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield DuckDBTransaction(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # a failed commit has already ended the transaction
                raise

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._connection() as con:
            return con.execute(sql, list(params)).df()

    def is_conflict(self, error: BaseException) -> bool:
        # Only write-write conflicts: a TransactionException is also how DuckDB reports a failed
        # commit ("No space left on device"), which no retry fixes.
        text = str(error).lower()
        if isinstance(error, (duckdb.ConstraintException, duckdb.TransactionException)):
            # a concurrent commit of the same key (reported at insert or at commit)
            return "duplicate key" in text
        return isinstance(error, duckdb.Error) and "conflict" in text

    def is_data_error(self, error: BaseException) -> bool:
        return isinstance(error, (duckdb.ConversionException, duckdb.InvalidInputException,
                                  duckdb.OutOfRangeException, pa.ArrowInvalid, pa.ArrowTypeError,
                                  OverflowError, UnicodeError))

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
