"""The interface both storage engines keep; ``EventStore`` talks to nothing else.

SQL is written once with ``?`` placeholders and plain ANSI features that DuckDB and PostgreSQL
share (window functions, ``ON CONFLICT DO NOTHING``, timestamp + interval); each backend binds
parameters its own way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

import pandas as pd

from sortition.store.schema import Table

T = TypeVar("T")


class Transaction(Protocol):
    """Work inside one transaction: everything commits together or not at all."""

    def insert_new(self, table: Table, rows: Sequence[tuple]) -> int:
        """Insert rows whose key is not in the table yet; return how many were inserted."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...


class Backend(Protocol):
    dialect: str  # "duckdb" | "postgresql"
    location: str

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame (columns as named in the SQL)."""

    def is_conflict(self, error: BaseException) -> bool:
        """True for errors that a retry of the same transaction can resolve (write conflicts)."""

    def is_data_error(self, error: BaseException) -> bool:
        """True for errors caused by a value the engine refuses (not by the engine or the disk)."""

    def close(self) -> None: ...


def write_with_retry(backend: Backend, work: Callable[[Transaction], T], attempts: int = 20) -> T:
    """Run ``work`` in a transaction, retrying it from scratch on write conflicts.

    Safe because every write is idempotent (``ON CONFLICT DO NOTHING`` on event ids), so a retry
    after a concurrent writer committed the same keys simply skips them.
    """
    delay = 0.005
    for attempt in range(attempts):
        try:
            with backend.transaction() as tx:
                return work(tx)
        except Exception as err:  # noqa: BLE001 - re-raised unless it is a conflict
            if attempt + 1 == attempts or not backend.is_conflict(err):
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")
