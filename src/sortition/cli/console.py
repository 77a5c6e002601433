"""The consoles every sub-command prints through: ``console`` for what the command prints (standard
output), ``diagnostics`` for its errors and warnings (standard error, so that a ``--json`` document or
a key piped to another program is never mixed with them).

``soft_wrap=True`` so that rich never inserts line breaks into messages: an error that names a long
path must read the same in an 80-column terminal, a pipe and a test runner. Tables still fit the
terminal; plain messages never wrap mid-word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from sortition import userfiles

console = Console(highlight=False, soft_wrap=True)
diagnostics = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: object) -> None:
    """Print ``error: MESSAGE`` with the message taken literally (no rich markup in user text)."""
    diagnostics.print(f"[red]error:[/red] {escape(str(message))}")


def print_warning(message: object) -> None:
    """Print ``warning: MESSAGE`` on stderr, taken literally (no rich markup in user text)."""
    diagnostics.print(f"[yellow]warning:[/] {escape(str(message))}")


def fail(message: object, code: int = 2) -> None:
    """Print the error and exit with ``code`` (2: the user's input is at fault)."""
    print_error(message)
    raise typer.Exit(code)


def read_file(path: str | Path, what: str) -> bytes:
    """The bytes of a user's file, or exit 2 with ``cannot read WHAT 'PATH': why``."""
    try:
        return userfiles.read_bytes(path, what)
    except ValueError as err:
        fail(err)
    raise AssertionError("unreachable")


def read_json(path: str | Path, what: str) -> Any:
    """A user's JSON file, or exit 2 naming it (unreadable, not text, or not JSON and where)."""
    try:
        return userfiles.read_json(path, what)
    except ValueError as err:
        fail(err)
    raise AssertionError("unreachable")
