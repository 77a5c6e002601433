"""DuckDB files that cannot be opened, in the user's terms: locked (and by whom), not a database.

Used by the data loaders and by the event store alike (the store sits above ``data``).
"""

from __future__ import annotations

import re

_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


class StoreLockedError(RuntimeError):
    """Another process holds the DuckDB file (the message says which)."""


def lock_holder(message: str) -> str | None:
    """``"process 1234 (/usr/bin/python3)"`` from DuckDB's lock error, or None."""
    found = _HOLDER.search(message)
    return f"process {found.group(2)} ({found.group(1)})" if found else None


def open_error(err: BaseException, location: str) -> Exception:
    """A clear error for a DuckDB file that cannot be opened: locked (and by whom), not a database,
    missing; other errors keep DuckDB's first line."""
    text = str(err)
    holder = lock_holder(text)
    if holder is not None or "lock" in text.lower():
        return StoreLockedError(
            f"the DuckDB file {location!r} is held by {holder or 'another process'}; DuckDB lets one process "
            "at a time write a file: stop that process (or wait for it), open the store with "
            "EventStore(path, shared=True) in every process, or use PostgreSQL for many writers"
        )
    if "not a valid DuckDB database" in text:
        return ValueError(f"{location!r} is not a DuckDB database")
    if "does not exist" in text:
        return ValueError(f"the DuckDB file {location!r} does not exist")
    return ValueError(f"cannot open the DuckDB file {location!r}: {text.strip().splitlines()[0]}")
