"""The Typer application that every sub-command module registers on."""

import typer

import sortition

app = typer.Typer(
    name="sortition",
    help="Adaptive experiments and contextual bandits, served with Eppo's semantics.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print Sortition's version."""
    typer.echo(sortition.__version__)
