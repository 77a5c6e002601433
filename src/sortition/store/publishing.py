"""Publishing and API keys: which configuration version each environment serves, and who may ask.

Environments (e.g. ``staging``, ``production``) each point at one saved configuration version. A
publish or a rollback appends a row to ``publications``; the environment serves the version of its
latest row, and the earlier rows are its history. Nothing is ever overwritten, so every version
that was served can be read back and served again.

API keys are random 160-bit secrets shown once, at creation. The store keeps only their SHA-256
(a fast hash is right for high-entropy random keys: there is no dictionary to guess from) and the
key's public prefix ``key_id`` to find the row; keys are checked with ``hmac.compare_digest``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sortition.names import did_you_mean, listing
from sortition.store.backend import Transaction, write_with_retry
from sortition.store.configurations import ConfigurationVersion
from sortition.store.store import EventStore

DEFAULT_ENVIRONMENT = "production"
ROLES = ("sdk", "client", "ingest", "admin")
ROLE_HELP = {
    "sdk": "server-side SDKs: the plain configuration, bandit models, OFREP",
    "client": "client-side SDKs: the obfuscated (CLIENT) configuration, OFREP",
    "ingest": "event loggers: POST /api/v1/events",
    "admin": "everything, in every environment: publish, rollback, rounds, versions",
}
_ENV_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_PATTERN = re.compile(r"^srt_([0-9a-f]{12})_([0-9a-f]{40})$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def check_environment(name: Any) -> str:
    """An environment name: 1-64 letters, digits, ``_ . -``, starting with a letter or digit."""
    if not isinstance(name, str) or not _ENV_PATTERN.match(name):
        raise ValueError(
            f"environment {name!r} is not a valid name: use 1-64 letters, digits, '_', '.' or "
            f"'-', starting with a letter or digit (e.g. {DEFAULT_ENVIRONMENT!r} or 'staging')"
        )
    return name


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is unknown{did_you_mean(role, ROLES)}; use one of {listing(ROLES)}")
    return role


# ---- API keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public facts (never the key itself). ``environment`` None: every environment."""

    key_id: str
    role: str
    environment: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
    description: str | None = None

    def allows(self, role: str, environment: str) -> bool:
        """True when this key may act as ``role`` in ``environment`` (admin keys may do anything)."""
        if self.revoked_at is not None:
            return False
        if self.role == "admin":
            return True
        return self.role == role and (self.environment is None or self.environment == environment)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_scope(role: str, environment: str | None = None) -> tuple[str, str | None]:
    """A new key's checked (role, environment): ValueError naming a bad one.

    ``environment`` defaults to ``production`` for sdk/client/ingest keys and to every environment
    (None) for admin keys.
    """
    check_role(role)
    if environment is None and role != "admin":
        environment = DEFAULT_ENVIRONMENT
    if environment is not None:
        check_environment(environment)
    return role, environment


def create_key(
    store: EventStore, role: str, environment: str | None = None, description: str | None = None
) -> tuple[str, ApiKey]:
    """Create a key -> (the key, shown only now; its stored facts); scoped as ``key_scope`` says."""
    role, environment = key_scope(role, environment)
    key_id = secrets.token_hex(6)
    key = f"srt_{key_id}_{secrets.token_hex(20)}"
    created = _now()
    write_with_retry(
        store._backend,
        lambda tx: tx.execute(
            "INSERT INTO api_keys (key_id, key_hash, role, environment, created_at, revoked_at, description) "
            "VALUES (?, ?, ?, ?, ?, NULL, ?)",
            [key_id, key_hash(key), role, environment, created, description],
        ),
    )
    return key, ApiKey(key_id, role, environment, created, None, description)


def _key_rows(store: EventStore) -> list[tuple]:
    frame = store._backend.frame(
        "SELECT key_id, key_hash, role, environment, created_at, revoked_at, description "
        "FROM api_keys ORDER BY created_at, key_id"
    )
    return list(frame.itertuples(index=False, name=None))


def _ts(value: Any) -> dt.datetime | None:
    if value is None or value != value:  # None, NaT
        return None
    return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value


def _api_key(row: tuple) -> ApiKey:
    key_id, _hash, role, environment, created, revoked, description = row
    return ApiKey(
        str(key_id),
        str(role),
        environment if isinstance(environment, str) else None,
        _ts(created),
        _ts(revoked),
        description if isinstance(description, str) else None,
    )


def list_keys(store: EventStore) -> list[ApiKey]:
    """Every key's public facts, oldest first (revoked ones included, with ``revoked_at``)."""
    return [_api_key(row) for row in _key_rows(store)]


def revoke_key(store: EventStore, key_id: str) -> ApiKey:
    """Revoke a key by its id (the ``srt_<id>_...`` prefix, as ``keys list`` shows it)."""
    known = {k.key_id: k for k in list_keys(store)}
    if key_id not in known:
        raise LookupError(f"no key with id {key_id!r} (known ids: {sorted(known)[:10]})")
    write_with_retry(
        store._backend,
        lambda tx: tx.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", [_now(), key_id]
        ),
    )
    return next(k for k in list_keys(store) if k.key_id == key_id)


class KeyRing:
    """An in-memory snapshot of the stored keys, to check a presented key without a query.

    ``authenticate`` costs the same whether the key id is known or not (a hash and one
    constant-time comparison either way).
    """

    _DUMMY = key_hash("srt_000000000000_" + "0" * 40)

    def __init__(self, rows: list[tuple]):
        self._keys = {str(row[0]): (str(row[1]), _api_key(row)) for row in rows}

    @classmethod
    def load(cls, store: EventStore) -> KeyRing:
        return cls(_key_rows(store))

    def __len__(self) -> int:
        return len(self._keys)

    def roles(self) -> dict[str, int]:
        """How many live keys each role has."""
        counts = {role: 0 for role in ROLES}
        for _hash, key in self._keys.values():
            if key.revoked_at is None:
                counts[key.role] += 1
        return counts

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The live key ``presented`` is, or None (unknown, malformed or revoked)."""
        if not presented:
            return None
        match = _KEY_PATTERN.match(presented)
        stored, key = self._keys.get(match.group(1), (self._DUMMY, None)) if match else (self._DUMMY, None)
        same = hmac.compare_digest(stored, key_hash(presented))
        if not same or key is None or key.revoked_at is not None:
            return None
        return key


# ---- publications -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    """One publish/rollback: ``environment`` serves ``version`` since ``published_at`` (naive UTC)."""

    seq: int
    environment: str
    version: int
    published_at: dt.datetime
    action: str
    note: str | None = None


def _publication(row: tuple) -> Publication:
    seq, environment, version, published_at, action, note = row
    return Publication(
        int(seq),
        str(environment),
        int(version),
        _ts(published_at),
        str(action),
        note if isinstance(note, str) else None,
    )


def publications(store: EventStore, environment: str | None = None) -> list[Publication]:
    """The publish/rollback history (of one environment, or all), oldest first."""
    where, params = ("", []) if environment is None else ("WHERE environment = ?", [environment])
    frame = store._backend.frame(
        "SELECT seq, environment, version, published_at, action, note FROM publications "
        f"{where} ORDER BY seq",
        params,
    )
    return [_publication(row) for row in frame.itertuples(index=False, name=None)]


def current(store: EventStore) -> dict[str, Publication]:
    """Each environment's current publication (the one it serves), by environment name."""
    frame = store._backend.frame(
        "SELECT p.seq, p.environment, p.version, p.published_at, p.action, p.note FROM publications p "
        "JOIN (SELECT environment, MAX(seq) AS seq FROM publications GROUP BY environment) m "
        "ON p.seq = m.seq ORDER BY p.environment"
    )
    return {p.environment: p for p in map(_publication, frame.itertuples(index=False, name=None))}


def change_token(store: EventStore) -> tuple:
    """A cheap fingerprint of the keys and publications: it changes whenever either does (a poller
    reloads them only then; two small aggregate queries, no DataFrame)."""
    with store._backend.transaction() as tx:
        keys = tx.fetch("SELECT COUNT(*), MAX(created_at), MAX(revoked_at), COUNT(revoked_at) FROM api_keys")
        pubs = tx.fetch("SELECT COUNT(*), MAX(seq) FROM publications")
    return tuple(keys[0]) + tuple(pubs[0])


def publish_version(
    store: EventStore,
    version: int,
    environment: str = DEFAULT_ENVIRONMENT,
    action: str = "publish",
    note: str | None = None,
) -> Publication:
    """Make ``environment`` serve the saved configuration ``version`` (LookupError if absent)."""
    check_environment(environment)
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version must be an integer, got {version!r}")
    store.configuration(version)  # LookupError naming the saved versions
    stamp = _now()

    def work(tx: Transaction) -> int:
        seq = int(tx.fetch("SELECT COALESCE(MAX(seq), 0) + 1 FROM publications")[0][0])
        tx.execute(
            "INSERT INTO publications (seq, environment, version, published_at, action, note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [seq, environment, version, stamp, action, note],
        )
        return seq

    seq = write_with_retry(store._backend, work)
    return Publication(seq, environment, version, stamp, action, note)


def validate_documents(flags: Mapping | str | bytes, bandits: Mapping | str | bytes | None = None) -> None:
    """Refuse a configuration any SDK would choke on: ValueError naming the JSON path of the bad
    field (``Configuration.from_json`` on the document and on its obfuscated CLIENT twin), or the
    bandits its flags reference without a model."""
    import json

    from sortition.serving import Configuration
    from sortition.serving.obfuscation import obfuscate_flags

    parsed = Configuration.from_json(flags, bandits)
    missing = sorted({link.bandit_key for link in parsed.bandit_links.values()} - set(parsed.bandits))
    if missing:
        # Eppo's SDKs drop the whole configuration when a referenced bandit has no model.
        raise ValueError(
            f"banditReferences: the flags use bandit(s) {missing} but the bandit models document "
            f"has {sorted(parsed.bandits) or 'none'}; publish the models with them (--bandits)"
        )
    doc = json.loads(flags) if isinstance(flags, (str, bytes, bytearray)) else flags
    if isinstance(doc, Mapping) and doc.get("format", "SERVER") == "SERVER":
        Configuration.from_json(obfuscate_flags(doc))


def publish(
    store: EventStore,
    flags: Mapping | str | bytes,
    bandits: Mapping | str | bytes | None = None,
    environment: str = DEFAULT_ENVIRONMENT,
    note: str | None = None,
) -> tuple[ConfigurationVersion, Publication]:
    """Validate, save as a new version, and serve it in ``environment``.

    A bad document raises ValueError (naming its bad field's path) before anything is saved, so the
    environment keeps serving its last good version.
    """
    check_environment(environment)
    validate_documents(flags, bandits)
    saved = store.save_configuration(flags, bandits)
    return saved, publish_version(store, saved.version, environment, note=note)


def rollback(store: EventStore, version: int, environment: str = DEFAULT_ENVIRONMENT) -> Publication:
    """Serve an earlier saved version again in ``environment`` (recorded as a rollback).

    Raises:
        ValueError: ``environment`` has never served a configuration (a typo such as ``prodution``
            would otherwise start a new environment while ``production`` kept serving the bad version).
        LookupError: no saved ``version``.
    """
    check_environment(environment)
    served = sorted(current(store))
    if environment not in served:
        raise ValueError(
            f"environment {environment!r} has never served a configuration, so there is nothing to roll "
            f"back{did_you_mean(environment, served)}; the environments are {listing(served) or 'none yet'}. "
            f"To serve a configuration in a new environment, publish it there (-e {environment})"
        )
    return publish_version(store, version, environment, action="rollback")


def publish_round(store: EventStore, version: int, environment: str, flag: str) -> Publication:
    """Serve a round's saved configuration in ``environment`` (``sortition round --publish``)."""
    return publish_version(store, version, environment, action="round", note=f"round of {flag!r}")
