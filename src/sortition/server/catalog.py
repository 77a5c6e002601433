"""What the server serves, per environment, held in memory and swapped whole.

Every environment's published version is rendered once into the exact bytes the SDK endpoints send
(plain SERVER document, obfuscated CLIENT document, bandit models; each also gzipped, each with an
ETag), plus a ``Client`` for OFREP. ``Catalog.refresh()`` re-reads the publication pointers and the
keys from the store (cheap queries) and rebuilds only the environments whose version changed, so a
publish made by another process (PostgreSQL) is served within one refresh interval, and a publish made
through this server at once.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sortition.serving import Client, Configuration
from sortition.serving.obfuscation import obfuscate_flags
from sortition.store import EventStore
from sortition.store.publishing import KeyRing, Publication, change_token, current

logger = logging.getLogger("sortition.server")


@dataclass(frozen=True)
class Document:
    """One response body, ready to send: plain and gzipped bytes, and its strong ETag."""

    body: bytes
    gzipped: bytes
    etag: str

    @classmethod
    def of(cls, obj: Any) -> Document:
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        return cls(
            body,
            gzip.compress(body, compresslevel=6, mtime=0),
            '"' + hashlib.sha256(body).hexdigest()[:24] + '"',
        )


@dataclass(frozen=True)
class Served:
    """An environment's published version, rendered."""

    environment: str
    version: int
    published_at: dt.datetime
    action: str
    flags: Document  # SERVER format
    client_flags: Document  # CLIENT format (obfuscated)
    bandits: Document
    client: Client  # evaluates OFREP requests
    flag_keys: tuple[str, ...]


def render(
    environment: str,
    publication: Publication,
    flags: dict,
    bandits: dict | None,
    assignment_logger: Any = None,
) -> Served:
    """Build an environment's documents; the configuration was validated when it was published."""
    stamp = publication.published_at.isoformat(timespec="milliseconds") + "Z"
    doc = {**flags, "format": "SERVER", "environment": {"name": environment}, "createdAt": stamp}
    bandit_doc = bandits if bandits is not None else {"bandits": {}}
    configuration = Configuration.from_json(doc, bandit_doc)
    return Served(
        environment=environment,
        version=publication.version,
        published_at=publication.published_at,
        action=publication.action,
        flags=Document.of(doc),
        client_flags=Document.of(obfuscate_flags(doc)),
        bandits=Document.of(bandit_doc),
        client=Client(configuration, assignment_logger),
        flag_keys=tuple(sorted(doc.get("flags", {}))),
    )


class Catalog:
    """The served environments and the key ring, refreshed from ``store``."""

    def __init__(self, store: EventStore, assignment_logger: Any = None):
        self.store = store
        self._logger = assignment_logger
        self._served: dict[str, Served] = {}
        self.keys = KeyRing([])
        self._lock = threading.Lock()
        self._closed = False
        self._token: tuple | None = None
        self.last_error: str | None = None

    def close(self) -> None:
        """Wait for a refresh in flight, and refuse later ones (the store is about to close)."""
        with self._lock:
            self._closed = True

    def get(self, environment: str) -> Served | None:
        return self._served.get(environment)

    @property
    def environments(self) -> dict[str, Served]:
        return dict(self._served)

    def refresh(self) -> bool:
        """Re-read keys and publications; True when something served changed. Never raises: a failed
        refresh keeps serving what it had (``last_error`` says why)."""
        with self._lock:
            if self._closed:
                return False
            try:
                token = change_token(self.store)
                if token == self._token:  # nothing changed: no reload (keeps the poll cheap)
                    self.last_error = None
                    return False
                self.keys = KeyRing.load(self.store)
                pointers = current(self.store)
                served = dict(self._served)
                changed = False
                for env, pub in pointers.items():
                    have = served.get(env)
                    if (
                        have is not None
                        and have.version == pub.version
                        and have.published_at == pub.published_at
                    ):
                        continue
                    saved = self.store.configuration(pub.version)
                    served[env] = render(env, pub, saved.flags, saved.bandits, self._logger)
                    changed = True
                    logger.info("environment %r now serves version %d", env, pub.version)
                self._served = served
                self._token = token
                self.last_error = None
                return changed
            except Exception as err:  # noqa: BLE001 - keep serving the last good state
                self.last_error = f"{type(err).__name__}: {err}"
                logger.error("refresh from the store failed (still serving what was loaded): %s", err)
                return False
