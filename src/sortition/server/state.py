"""The server's parts, built once per app: store, catalog, group committer, metrics."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sortition.server.catalog import Catalog
from sortition.server.ingest import GroupCommitter
from sortition.server.metrics import Metrics
from sortition.store import EventStore
from sortition.store.records import ROW_BUILDERS, FieldError

logger = logging.getLogger("sortition.server")


@dataclass(frozen=True)
class Settings:
    """Server settings. ``refresh_interval``: seconds between re-reads of the published versions and
    keys (publishes by other processes show within it). ``max_pending``: rows the ingestion queue
    holds before answering 429. ``max_batch``: most rows per group commit. ``linger``: seconds a commit
    waits for more requests to join it. ``log_ofrep``: store the
    assignments that OFREP evaluations make (the server is then the SDK that logs them)."""

    refresh_interval: float = 2.0
    max_pending: int = 400_000
    max_batch: int = 100_000
    linger: float = 0.005
    log_ofrep: bool = True


class ExposureLogger:
    """The assignment/bandit logger of the OFREP clients: rows go to the group commit, unawaited."""

    def __init__(self) -> None:
        self.committer: GroupCommitter | None = None
        self.dropped = 0

    def _log(self, kind: str, event: Mapping) -> None:
        committer = self.committer
        if committer is None:
            return
        try:
            row = ROW_BUILDERS[kind][1](event)
        except FieldError as err:  # cannot happen for events the Client built; never raise here
            warnings.warn(f"OFREP {kind} event not stored: {err}", RuntimeWarning, stacklevel=2)
            return
        rows: dict[str, list[tuple]] = {kind: [row]}
        if not committer.offer(rows, 1):
            self.dropped += 1
            logger.warning(
                "ingestion queue full: an OFREP %s event was not stored (%d so far)", kind, self.dropped
            )

    def log_assignment(self, event: Mapping) -> None:
        self._log("assignment", event)

    def log_bandit_action(self, event: Mapping) -> None:
        self._log("bandit", event)


@dataclass
class ServerState:
    store: EventStore
    settings: Settings
    catalog: Catalog
    committer: GroupCommitter
    metrics: Metrics
    round_lock: threading.Lock = field(default_factory=threading.Lock)
    rounds: dict[str, dict[str, Any]] = field(default_factory=dict)  # flag -> the latest round run here

    @classmethod
    def build(cls, store: EventStore, settings: Settings) -> ServerState:
        exposures = ExposureLogger() if settings.log_ofrep else None
        catalog = Catalog(store, exposures)
        committer = GroupCommitter(store, settings.max_pending, settings.max_batch, settings.linger)
        if exposures is not None:
            exposures.committer = committer
        metrics = Metrics(
            lambda: committer.depth,
            lambda: {env: s.version for env, s in catalog.environments.items()},
            lambda: committer.stats.deduplicated,
        )
        return cls(store, settings, catalog, committer, metrics)
