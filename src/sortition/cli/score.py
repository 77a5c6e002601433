"""``sortition score``: every subject's variation (and bandit action) for a whole audience."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from sortition.cli.app import app
from sortition.cli.console import console, fail


@app.command()
def score(
    config: Path = typer.Argument(..., help="Flags configuration (UFC JSON, plain or obfuscated)."),
    input: Path = typer.Argument(..., help="Audience: a .parquet or .csv file, or a .duckdb database."),
    output: Path = typer.Argument(..., help="Where to write the scores (Parquet; written atomically)."),
    flag: str = typer.Option(..., "--flag", help="The flag to evaluate for every row."),
    bandits: Path | None = typer.Option(None, help="Bandit models JSON: also choose each row's action."),
    actions: Path | None = typer.Option(
        None, help="Actions: {action: {attribute: value}}, or a list of action keys."),
    subject: str = typer.Option("subject", help="The column of subject keys; the others are attributes."),
    default: str | None = typer.Option(None, help="Value served when the flag does not apply (flag's type)."),
    table: str | None = typer.Option(None, help="DuckDB input: the table to score."),
    query: str | None = typer.Option(None, help="DuckDB input: a query whose rows to score."),
    batch_rows: int = typer.Option(100_000, min=1, help="Rows read and scored at a time (bounds memory)."),
    workers: int | None = typer.Option(None, min=1, help="Score on a Dask LocalCluster of N workers."),
    scheduler: str | None = typer.Option(None, help="Score on the Dask cluster at this scheduler address."),
) -> None:
    """Score an audience offline: one row per subject in, one row out, with the variation, the
    allocation, the bandit action and its probability, and why a subject got the default.

    Results are those of the request-time client, subject by subject (the same columnar call
    serves both). Events are not logged.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sortition.workflows.score import Source, load_job, score_audience

    try:
        source = Source(input, table=table, query=query, batch_rows=batch_rows)
        job = load_job(config, flag, subject=subject, bandits=bandits, actions=actions)
        variation_type = job.client().configuration.get_flag(flag).variation_type
        job = replace(job, default=_typed_default(default, variation_type, bandit=actions is not None))
        total = source.total_rows()
        columns = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn() if total else TextColumn(""),
                   TextColumn("{task.completed:,} rows"), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("score", total=total)
            rows = score_audience(job, source, output, workers=workers, scheduler=scheduler,
                                  progress=lambda n: bar.advance(task, n))
    except ValueError as exc:
        fail(exc)
    console.print(f"scored {rows:,} rows of {input} with flag {flag!r} -> {output}")


def _typed_default(text: str | None, variation_type: str, bandit: bool) -> object:
    """The ``--default`` text as a value of the flag's type (bandit flags serve strings)."""
    if text is None or bandit or variation_type == "STRING":
        return text
    try:
        if variation_type == "INTEGER":
            return int(text)
        if variation_type == "NUMERIC":
            return float(text)
        if variation_type == "BOOLEAN":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        return json.loads(text)
    except ValueError:
        article = "an" if variation_type[:1] in "AEIOU" else "a"
        raise ValueError(f"--default {text!r} is not {article} {variation_type} value, the type of the flag"
                         ) from None
