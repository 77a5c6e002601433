"""``sortition serve``: the HTTP server that real SDKs poll and post events to.

- ``GET /api/flag-config/v1/config`` and ``/api/flag-config/v1/bandits``: the published
  configuration, exactly as Eppo's SDKs fetch it (ETag/304, gzip);
- ``POST /ofrep/v1/evaluate/flags[/{key}]``: OpenFeature remote evaluation by ``serving.Client``;
- ``POST /api/v1/events``: event ingestion with group commit (2xx = durable);
- admin: publish, rollback, versions, rounds; ``/healthz``, ``/readyz``, ``/metrics``, ``/``.

See docs/server.md. Nothing in ``serving`` imports this package.
"""

from sortition.server.app import create_app
from sortition.server.state import Settings

__all__ = ["Settings", "create_app"]
