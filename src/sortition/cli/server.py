"""``sortition serve``, ``publish``, ``versions``, ``rollback`` and ``keys``: the server and its admin.

``publish``, ``versions`` and ``rollback`` work on a STORE directly, or through a running server with
``--server URL --key ADMIN_KEY`` (needed for a DuckDB store that ``serve`` holds: one process at a
time may write a DuckDB file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from sortition.cli.app import Group, SortitionTyper, app
from sortition.cli.console import console, fail, read_json
from sortition.names import did_you_mean, listing

keys_app = SortitionTyper(cls=Group, help="API keys: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

_SERVER = typer.Option(None, "--server", help="A running server's URL, in place of STORE (with --key).")
_KEY = typer.Option(None, "--key", help="An admin key of that server.", envvar="SORTITION_ADMIN_KEY")
_ENVIRONMENT = typer.Option("production", "--environment", "-e", help="The environment (e.g. staging).")


def _open(store: str, create: bool = False) -> Any:
    from sortition.store import EventStore

    if (
        not create
        and not store.startswith(("postgresql://", "postgres://"))
        and store != ":memory:"
        and not Path(store).exists()
    ):
        fail(
            f"event store {store!r} does not exist; give the DuckDB file or postgresql:// URL that "
            "'sortition serve' serves"
        )
    try:
        return EventStore(store, lock_timeout=2.0)
    except RuntimeError as err:
        fail(f"{err} While 'sortition serve' holds a DuckDB store, use --server URL --key ADMIN_KEY.")


def _where(
    args: list[str], server: str | None, key: str | None, names: tuple[str, ...], open_store: bool = True
) -> tuple[Any, list[str]]:
    """(an AdminClient, or an open EventStore (its path if not ``open_store``), the other positional
    arguments)."""
    from sortition.server.run import AdminClient

    if server is not None:
        if not key:
            fail("--server needs --key ADMIN_KEY (an admin key: sortition keys create STORE --role admin)")
        if len(args) != len(names) - 1:
            fail(f"with --server give {' '.join(names[1:]) or 'no arguments'}, not STORE")
        try:
            return AdminClient(server, key), args
        except ValueError as err:
            fail(err)
            raise AssertionError("unreachable") from None
    if len(args) != len(names):
        fail(f"give {' '.join(names)} (or --server URL --key ADMIN_KEY in place of STORE)")
    return (_open(args[0]) if open_store else args[0]), args[1:]


@app.command()
def serve(
    store: str = typer.Argument(..., help="Event store: a DuckDB file or a postgresql:// URL."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    refresh: float = typer.Option(
        2.0, min=0.05, help="Seconds between re-reads of published versions and keys."
    ),
) -> None:
    """Serve the published configurations to Eppo SDKs and OFREP clients, and ingest their events.

    Runs until SIGTERM or Ctrl-C; then finishes the requests in flight and commits every accepted event.
    """
    from sortition.server.run import serve as run_server
    from sortition.server.state import Settings

    try:
        run_server(store, host, port, Settings(refresh_interval=refresh), announce=typer.echo)
    except (ValueError, RuntimeError) as err:
        fail(err)


@app.command()
def publish(
    args: list[str] = typer.Argument(..., help="STORE FLAGS.json, or FLAGS.json with --server."),
    bandits: Path = typer.Option(None, "--bandits", help="Bandit models JSON (bandit-models-v1)."),
    environment: str = _ENVIRONMENT,
    server: str = _SERVER,
    key: str = _KEY,
) -> None:
    """Validate a configuration, save it as a new version and serve it in ENVIRONMENT.

    A bad document is refused with the path of its bad field; the environment keeps serving its last
    good version."""
    from sortition.server.admin import publication_json
    from sortition.store.publishing import check_environment, publications, validate_documents
    from sortition.store.publishing import publish as publish_store

    target, rest = _where(args, server, key, ("STORE", "FLAGS.json"), open_store=False)
    flags = read_json(rest[0], "flags file")
    models = None if bandits is None else read_json(bandits, "bandits file")
    try:
        # Checked before the store is opened, so that a refused document leaves no new store behind.
        check_environment(environment)
        validate_documents(flags, models)
        if server is not None:
            version = target.publish(flags, models, environment)["version"]
            history = target.versions()["history"]
        else:
            with _open(target, create=True) as store:
                version = publish_store(store, flags, models, environment)[1].version
                history = [publication_json(p) for p in publications(store)]
    except (ValueError, TypeError, LookupError) as err:
        fail(f"{rest[0]} was not published: {err}")
    console.print(f"Published version [bold]{version}[/] to [bold]{escape(environment)}[/]"
                  f"{escape(_new_environment_note(history, environment))}.")


def _new_environment_note(history: list[dict[str, Any]], environment: str) -> str:
    """Where a publish started a new environment beside others: say so, as a typo (``prodution``)
    would leave the intended environment serving its old version."""
    if sum(h["environment"] == environment for h in history) != 1:
        return ""
    others = sorted({h["environment"] for h in history} - {environment})
    if not others:
        return ""
    return f": a new environment{did_you_mean(environment, others)}; keys of {listing(others)} do not see it"


@app.command()
def versions(
    args: list[str] = typer.Argument(None, help="STORE (or nothing, with --server)."),
    server: str = _SERVER,
    key: str = _KEY,
) -> None:
    """List the saved configuration versions and where each is served."""
    from sortition.server.admin import versions_json

    target, _ = _where(list(args or []), server, key, ("STORE",))
    try:
        if server is not None:
            answer = target.versions()
        else:
            with target:
                answer = versions_json(target)
    except (ValueError, LookupError) as err:
        fail(err)
    table = Table("version", "created (UTC)", "flags", "bandits", "served in")
    for row in answer["versions"]:
        table.add_row(
            str(row["version"]),
            row["created_at"][:19],
            escape(", ".join(row["flags"][:6])),
            escape(", ".join(row["bandits"][:4])),
            escape(", ".join(row["served_in"])) or "-",
        )
    console.print(table)
    for env, pub in sorted(answer["environments"].items()):
        console.print(
            f"{escape(env)}: version {pub['version']} since {pub['published_at'][:19]} ({pub['action']})"
        )
    if not answer["versions"]:
        console.print("No configuration saved yet: sortition publish STORE FLAGS.json")


@app.command()
def rollback(
    args: list[str] = typer.Argument(..., help="STORE VERSION, or VERSION with --server."),
    environment: str = _ENVIRONMENT,
    server: str = _SERVER,
    key: str = _KEY,
) -> None:
    """Serve an earlier saved VERSION again in ENVIRONMENT."""
    from sortition.store.publishing import rollback as rollback_store

    target, rest = _where(args, server, key, ("STORE", "VERSION"))
    try:
        version = int(rest[0])
    except ValueError:
        fail(f"VERSION must be a version number (see sortition versions), got {rest[0]!r}")
    try:
        if server is not None:
            target.rollback(version, environment)
        else:
            with target:
                rollback_store(target, version, environment)
    except (ValueError, TypeError, LookupError) as err:
        fail(err)
    console.print(f"[bold]{escape(environment)}[/] now serves version [bold]{version}[/].")


@keys_app.command("create")
def keys_create(
    store: str = typer.Argument(..., help="Event store: a DuckDB file or a postgresql:// URL."),
    role: str = typer.Option(..., help="sdk, client, ingest or admin."),
    environment: str = typer.Option(
        None, "--environment", "-e", help="Environment of the key (default: production; admin: all)."
    ),
    description: str = typer.Option(None, help="A note to recognize the key by."),
) -> None:
    """Create an API key. The key is printed alone on the last line, once: it is stored hashed."""
    from sortition.store.publishing import create_key, current, key_scope

    try:
        key_scope(role, environment)  # before the store is opened: a refused key creates no store
        with _open(store, create=True) as target:
            secret, made = create_key(target, role, environment, description)
            served = sorted(current(target))
    except (ValueError, TypeError) as err:
        fail(err)
    scope = made.environment or "every environment"
    console.print(
        f"Created {made.role} key {made.key_id} for {escape(scope)}. Keep it now: it is never shown again."
    )
    if made.environment is not None and served and made.environment not in served:
        # a key may come before its environment's first publish, but a typo would poll nothing for ever
        console.print(f"note: environment {made.environment!r} serves no configuration yet"
                      f"{did_you_mean(made.environment, served)}; the environments are {listing(served)}",
                      markup=False)
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    store: str = typer.Argument(..., help="Event store: a DuckDB file or a postgresql:// URL."),
) -> None:
    """List the keys (ids, roles, environments; never the keys themselves)."""
    from sortition.store.publishing import list_keys

    with _open(store) as target:
        keys = list_keys(target)
    if not keys:
        console.print(f"No keys yet: sortition keys create {store} --role sdk", markup=False)
        return
    table = Table("id", "role", "environment", "created (UTC)", "revoked", "description")
    for k in keys:
        table.add_row(
            k.key_id,
            k.role,
            escape(k.environment or "all"),
            k.created_at.isoformat()[:19],
            "-" if k.revoked_at is None else k.revoked_at.isoformat()[:19],
            escape(k.description or ""),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    store: str = typer.Argument(..., help="Event store: a DuckDB file or a postgresql:// URL."),
    key_id: str = typer.Argument(..., help="The key's id (see sortition keys list)."),
) -> None:
    """Revoke a key (a running server stops accepting it within its refresh interval)."""
    from sortition.store.publishing import revoke_key

    try:
        with _open(store) as target:
            revoke_key(target, key_id)
    except LookupError as err:
        fail(err.args[0])
    console.print(f"Revoked key {escape(key_id)}.")


def print_remote_round(url: str, key: str | None, publish: bool, environment: str, **fields: Any) -> None:
    """``sortition round http://SERVER ...``: the server runs the round on the store it holds (paths
    are sent absolute: the server reads and writes them, on its machine)."""
    from sortition.cli.round import SRM_EXIT
    from sortition.server.run import AdminClient, AdminError

    if not key:
        fail("a round through a server needs --key ADMIN_KEY (or SORTITION_ADMIN_KEY)")
    for name in ("state", "out"):
        if fields.get(name) is not None:
            fields[name] = str(Path(fields[name]).resolve())
    try:
        with console.status(f"round of {fields['flag']!r} running in {url}"):
            run = AdminClient(url, key).round(publish=publish, environment=environment, **fields)
    except AdminError as err:
        fail(err, code=SRM_EXIT if err.status == 409 else 2)
    except ValueError as err:
        fail(err)
    if run["n_new"]:
        console.print(
            f"Round {run['round']}: read [bold]{run['n_new']:,}[/] new exposures ({run['n_total']:,} in all)."
        )
    else:
        console.print(
            f"Created experiment [bold]{escape(run['flag'])}[/] with arms {', '.join(run['arms'])}."
        )
    console.print(
        f"Configuration version [bold]{run['version']}[/]"
        + (f" published to [bold]{escape(run['environment'])}[/]." if run["environment"] else " saved.")
    )
    console.print(
        f"State saved to {escape(run['state'])} (on the server); report: {escape(str(run['report']))}"
    )
