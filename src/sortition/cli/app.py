"""The Typer application that every sub-command module registers on.

Conventions every command gets from :class:`Command` (register commands with ``@app.command()`` or
on a :class:`SortitionTyper` group):

- help shows arguments as ``DATA`` and option types as ``TEXT``/``INTEGER``/``FLOAT``/``PATH``, and its
  paragraphs wrap with the terminal, not where the docstring's lines end;
- Python warnings print as one ``warning: ...`` line (no source file and line), each once;
- errors in the user's input (ValueError, LookupError, a missing driver, a locked or unreadable
  store) print as one ``error: ...`` line and exit with code 2; anything else (a failing fit, a bug)
  prints one line naming the exception and exits with code 1 (``SORTITION_DEBUG=1`` shows the
  traceback). Never a traceback by default.
"""

from __future__ import annotations

import inspect
import os
import re
import warnings
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

import sortition
from sortition.cli.console import print_error, print_warning

# recent Typer vendors click as typer._click; older ones use click itself
_click = getattr(typer.core, "_click", None) or click
_NOT_ONE_OF = re.compile(r"'([^']*)' is not one of (.*?)\.?$")

DEBUG_ENV = "SORTITION_DEBUG"  # set: unexpected errors show their traceback
_TYPE_NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH", bool: "BOOLEAN"}


def _user_errors() -> tuple[type[BaseException], ...]:
    import duckdb

    from sortition.data.locks import StoreLockedError

    return (ValueError, LookupError, ImportError, OSError, StoreLockedError, duckdb.Error)


def _plain_metavars(params: list[Any]) -> None:
    """Click-style help for ``params``: ``DATA`` for arguments, ``TEXT``/``INTEGER``/``PATH``/``[a|b]``
    for option values, nothing for flags (recent Typer shows ``{data}``, ``<str>``, ``<bool>``)."""
    for param in params:
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.display_type_rich = lambda ctx: None  # a flag takes no value
            continue
        desc = getattr(param, "type_descriptor", None)
        if isinstance(param, TyperArgument):
            param.metavar = (param.name or "value").upper()
            if desc is not None:  # the type column: TEXT/PATH, not Typer's <str>
                kind = "PATH" if desc.is_path else _TYPE_NAMES.get(desc.annotation, "TEXT")
                param.display_type_rich = lambda ctx, _kind=kind: _kind
            continue
        if desc is None:
            continue
        if desc.is_choice and desc.choices:
            param.metavar = "[" + "|".join(str(c) for c in desc.choices) + "]"
        elif desc.is_path:
            param.metavar = "PATH"
        else:
            annotation = desc.annotation
            param.metavar = _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", "TEXT").upper())


def _prose(help_text: str | None) -> str | None:
    """A docstring's help with each paragraph on one line: Typer's rich help keeps single line breaks, so
    source lines wrapped at 110 columns would break sentences mid-line in a terminal."""
    if not help_text:
        return help_text
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


class _PlainHelp:
    """Mixin: plain metavars on the command's parameters and its --help option; help paragraphs that the
    terminal wraps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _prose(self.help)
        _plain_metavars(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            _plain_metavars([option])
        return option


class Group(_PlainHelp, TyperGroup):
    """The ``sortition`` group (and its sub-groups) with plain help."""


class Command(_PlainHelp, TyperCommand):
    """A Typer command with plain metavars, one-line warnings and one-line errors."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Bad options and values as one ``error:`` line (no box that wraps with the terminal)."""
        try:
            return super().parse_args(ctx, args)
        except _click.exceptions.UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":
                raise
            print_error(_usage_message(err, ctx))
            raise typer.Exit(2) from None

    def invoke(self, ctx: click.Context) -> Any:
        shown: set[str] = set()

        def one_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
            text = " ".join(str(message).split())
            if text not in shown:
                shown.add(text)
                print_warning(text)

        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)  # notes to developers (pandas, numpy)
            # rendering and sampler chatter, not about the user's data (stochtree's own notes on the
            # design matrix are filtered where the posterior is fit)
            warnings.filterwarnings("ignore", module=r"matplotlib(\..*)?$")
            warnings.showwarning = one_line
            try:
                return super().invoke(ctx)
            except _click.exceptions.UsageError as err:  # typer.BadParameter raised by a command
                print_error(_usage_message(err, ctx))
                raise typer.Exit(2) from None
            except (typer.Exit, typer.Abort, _click.exceptions.ClickException):
                raise
            except _user_errors() as err:
                print_error(_message(err))
                raise typer.Exit(2) from None
            except Exception as err:  # noqa: BLE001 - a bug or a library failure: one line, not a traceback
                if os.environ.get(DEBUG_ENV):
                    raise
                first = (str(err).strip().splitlines() or [""])[0]
                print_error(f"{type(err).__name__}: {first} (set {DEBUG_ENV}=1 for the traceback, and please "
                            "report it)")
                raise typer.Exit(1) from None


def _usage_message(err: Any, ctx: Any) -> str:
    from sortition.names import did_you_mean

    text = err.format_message().replace("Value error, ", "")
    found = _NOT_ONE_OF.search(text)
    if found:
        choices = re.findall(r"'(.*?)'", found.group(2))
        text += did_you_mean(found.group(1), choices)
    return f"{text} (see {ctx.command_path} --help)"


def _message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.strerror or err}: {err.filename}"
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0] if type(err).__module__.startswith("duckdb") else text


class SortitionTyper(typer.Typer):
    """A Typer group whose commands are :class:`Command` unless told otherwise (pass ``cls=Group``
    for plain help on the group itself)."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or Command, **kwargs)


app = SortitionTyper(
    name="sortition",
    cls=Group,
    help="Adaptive experiments and contextual bandits, served with Eppo's semantics.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sortition {sortition.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print Sortition's version and exit."
    ),
) -> None:
    """Adaptive experiments and contextual bandits, served with Eppo's semantics."""


@app.command()
def version() -> None:
    """Print Sortition's version."""
    typer.echo(sortition.__version__)
