"""Running the server: ``serve(store, host, port)`` (uvicorn) and the admin client of the CLI."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

from sortition.server.app import create_app
from sortition.server.state import Settings
from sortition.store import EventStore
from sortition.store.publishing import ROLE_HELP, KeyRing


def serve(
    store: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    announce: Callable[[str], None] = print,
    graceful_timeout: float = 30.0,
) -> None:
    """Serve ``store`` until SIGTERM/SIGINT; then finish the requests in flight, commit the queued
    events and exit. ``announce`` receives the startup lines (URL, keys by role)."""
    import uvicorn

    sock = listening_socket(host, port)  # before anything is announced: a port in use is refused first
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    events = EventStore(store)
    try:
        roles = KeyRing.load(events).roles()
        app = create_app(events, settings)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(graceful_timeout),
        )
        server = uvicorn.Server(config)
        url = f"http://{host}:{port}"
        announce(f"Sortition server on {url} serving {events!r}")
        announce(f"  Eppo SDKs: base URL {url}/api   OFREP: {url}   events: POST {url}/api/v1/events")
        for role, n in roles.items():
            announce(f"  {role:<6} keys: {n}  ({ROLE_HELP[role]})")
        if not any(roles.values()):
            announce(f"  No keys yet: sortition keys create {store} --role sdk (and ingest, admin)")
        server.run(sockets=[sock])
    finally:
        events.close()
        sock.close()


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for the server (as uvicorn binds one: ``SO_REUSEADDR``);
    ValueError saying what to do when the port is taken or the address is not this machine's."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ValueError(f"--host {host!r} is not an address of this machine ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use (another server?); give another --port, or "
                             "--port 0 for a free one") from None
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


class AdminError(ValueError):
    """The admin API refused a call; ``status`` is its HTTP status (409: a round blocked by its
    sample-ratio check)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class AdminClient:
    """The admin API over HTTP, for ``--server URL --key ADMIN_KEY`` in the CLI."""

    def __init__(self, url: str, key: str, timeout: float = 600.0):
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--server {url!r} needs its scheme: http://{url} (or https://)")
        self._http = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {key}"}
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ValueError(f"cannot reach the server at {self._http.base_url}: {err}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:300]}
        if response.status_code >= 400:
            raise AdminError(response.status_code,
                             f"the server answered {response.status_code}: {body.get('error', body)}")
        return body

    def publish(self, flags: Any, bandits: Any, environment: str) -> dict:
        return self._call(
            "POST",
            "/api/v1/configurations",
            json={"flags": flags, "bandits": bandits, "environment": environment},
        )

    def rollback(self, version: int, environment: str) -> dict:
        return self._call("POST", "/api/v1/rollback", json={"version": version, "environment": environment})

    def versions(self) -> dict:
        return self._call("GET", "/api/v1/versions")

    def round(self, **fields: Any) -> dict:
        return self._call("POST", "/api/v1/rounds", json={k: v for k, v in fields.items() if v is not None})
