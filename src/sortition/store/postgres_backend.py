"""PostgreSQL backend (psycopg 3): same tables and SQL as DuckDB.

Each store holds one connection behind a lock (threads take turns; each batch is one
transaction). Any number of processes may write at once: PostgreSQL serializes conflicting inserts
of the same event id, and ``ON CONFLICT DO NOTHING`` makes the later one a no-op. Batches are
staged with ``COPY`` into a temporary table, then inserted in one statement.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from sortition.store.schema import TABLES, Table, create_statements, upgrade_statements


_ANALYZE_AFTER = 1000


def _pg(sql: str) -> str:
    # The shared SQL uses "?" placeholders and never a literal "?" or "%".
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresTransaction:
    def __init__(self, con: Any):
        self._con = con

    def insert_new(self, table: Table, rows: Sequence[tuple]) -> int:
        if not rows:
            return 0
        staged = f"_sortition_staged_{table.name}"
        cols = ", ".join(table.names)
        with self._con.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staged} (LIKE {table.name}) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY {staged} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {staged} "
                f"ON CONFLICT ({table.key}) DO NOTHING"
            )
            inserted = max(int(cur.rowcount), 0)
            cur.execute(f"DELETE FROM {staged}")
            if inserted >= _ANALYZE_AFTER:
                # Fresh statistics now, not when autovacuum gets to it: with none, the planner takes
                # the join's inputs for tiny and picks a nested loop that takes minutes on 50k rows.
                cur.execute(f"ANALYZE {table.name}")
        return inserted

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(_pg(sql), list(params))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._con.execute(_pg(sql), list(params)).fetchall()

    def columns(self, table: str) -> list[str]:
        """The column names ``table`` has now (in the connection's search path)."""
        with self._con.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} LIMIT 0")
            return [d.name for d in cur.description]


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str, connect_timeout: float = 10.0):
        try:
            import psycopg
        except ImportError:  # depends on the environment
            from sortition.store.errors import missing_psycopg

            raise missing_psycopg() from None
        self._psycopg = psycopg
        self.location = url
        self._lock = threading.RLock()
        self._con = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout)))
        with self.transaction() as tx:
            # Several processes may create the schema at once: serialize them on an advisory lock.
            tx.execute("SELECT pg_advisory_xact_lock(74215001)")
            for statement in create_statements(indexes=True):
                tx.execute(statement)
            present = {t.name: set(tx.columns(t.name)) for t in TABLES}
            for statement in upgrade_statements(present):
                tx.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        with self._lock, self._con.transaction():
            yield PostgresTransaction(self._con)

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._lock, self._con.transaction(), self._con.cursor() as cur:
            # Reads here are single-table scans or bulk joins over all exposures; the planner's guess
            # for "first exposure per subject" is far too small and would pick nested loops.
            cur.execute("SET LOCAL enable_nestloop = off")
            cur.execute(_pg(sql), list(params))
            names = [d.name for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=names)

    def is_conflict(self, error: BaseException) -> bool:
        errors = self._psycopg.errors
        return isinstance(
            error, (errors.SerializationFailure, errors.DeadlockDetected, errors.UniqueViolation)
        )

    def is_data_error(self, error: BaseException) -> bool:
        # DataError covers NUL and untranslatable characters, numbers and timestamps out of range.
        return isinstance(error, (self._psycopg.DataError, OverflowError, UnicodeError))

    def close(self) -> None:
        with self._lock:
            self._con.close()
