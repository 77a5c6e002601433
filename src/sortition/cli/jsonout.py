"""``--json``: one JSON document on stdout, for scripts and dashboards (no tables, no progress)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import typer

from sortition.cli.console import console


def print_json(document: Any) -> None:
    """Print ``document`` as indented, strict JSON (NaN as null; see ``facts.json_ready``)."""
    from sortition.report.facts import json_ready

    typer.echo(json.dumps(json_ready(document), indent=2, allow_nan=False, ensure_ascii=False))


def status(message: str, as_json: bool) -> AbstractContextManager:
    """The console's spinner, or nothing when the output is JSON."""
    return nullcontext() if as_json else console.status(message)
