"""``sortition conformance``: run Eppo-format test files against Sortition's evaluator."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from sortition.cli.app import app
from sortition.cli.console import console, fail, read_json


@app.command()
def conformance(
    flags_json: Path = typer.Argument(..., help="UFC flags configuration (plain, obfuscated or wire wrapper)."),
    tests_path: Path = typer.Argument(..., help="An Eppo test file, or a folder of them (flag and bandit tests)."),
    bandits: Path | None = typer.Option(None, "--bandits", help="Bandit models JSON, for bandit test files."),
    details: bool = typer.Option(True, "--details/--no-details", help="Also compare evaluation details."),
) -> None:
    """Run Eppo test vectors; print each failing subject, then 'N passed, M failed'."""
    from sortition.serving import Client, Configuration
    from sortition.serving.conformance import run_path

    logging.getLogger("sortition.serving").setLevel(logging.ERROR)  # expected warnings (e.g. invalid values)
    try:
        models = None if bandits is None else read_json(bandits, "bandits file")
        configuration = Configuration.from_json(read_json(flags_json, "flags file"), models)
        outcomes = run_path(Client(configuration), tests_path, details=details)
    except (OSError, ValueError, TypeError) as exc:
        fail(exc)
    failed = [o for o in outcomes if not o.passed]
    if failed and configuration.bandit_links and not configuration.bandits:
        console.print("note: the flags link variations to bandits but no models were given (--bandits MODELS_JSON)")
    for o in failed:
        console.print(f"FAIL {o.file} {o.subject}: {o.message}", markup=False)
    typer.echo(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)
