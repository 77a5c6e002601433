"""Store errors in the user's terms: who holds a locked DuckDB file, what to install for PostgreSQL."""

from __future__ import annotations

from sortition.data.locks import StoreLockedError, lock_holder, open_error

POSTGRES_EXTRA = "pip install sortition[postgres]"

__all__ = ["POSTGRES_EXTRA", "StoreLockedError", "lock_holder", "missing_psycopg", "open_error"]


def missing_psycopg() -> ImportError:
    return ImportError(f"a postgresql:// store needs psycopg 3: {POSTGRES_EXTRA}")
