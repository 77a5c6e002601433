"""The one reader of a user's own files (configurations, models, test vectors, action lists).

Every failure is a ``ValueError`` that names the file and what it was for: a missing or unreadable
file, bytes that are not text, text that is not JSON (with where). The CLI prints it; nothing here
exits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_bytes(path: str | Path, what: str) -> bytes:
    """The bytes of a user's file; ValueError ``cannot read WHAT 'PATH': why``."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {what} '{path}': {err.strerror or err}") from None


def read_text(path: str | Path, what: str) -> str:
    """A user's UTF-8 text file; ValueError naming the file and the first byte that is not UTF-8."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(_not_text(path, what, err)) from None


def read_json(path: str | Path, what: str) -> Any:
    """A user's JSON file (UTF-8, or UTF-16/32 with its byte order, as ``json.loads`` reads bytes);
    ValueError naming the file: unreadable, not text, or not JSON and where."""
    data = read_bytes(path, what)
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} '{path}' is not valid JSON: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(_not_text(path, what, err)) from None


def _not_text(path: str | Path, what: str, err: UnicodeDecodeError) -> str:
    bad = err.object[err.start:err.start + 1].hex()
    return (f"{what} '{path}' is not UTF-8 text: byte 0x{bad} at offset {err.start}; "
            "save it as UTF-8 (is it the file you meant?)")
