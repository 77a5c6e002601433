"""Prometheus metrics (one registry per app) and the per-minute counts behind the status page."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# Route names used as the "route" label (paths with a flag key in them collapse to one route).
_ROUTES = (
    ("/api/flag-config/v1/config", "config"),
    ("/api/flag-config/v1/bandits", "bandits"),
    ("/ofrep/v1/evaluate/flags/", "ofrep_flag"),
    ("/ofrep/v1/evaluate/flags", "ofrep_bulk"),
    ("/api/v1/events", "events"),
    ("/api/v1/", "admin"),
)


def route_of(path: str) -> str:
    for prefix, name in _ROUTES:
        if path.startswith(prefix):
            return name
    return path if path in ("/", "/healthz", "/readyz", "/metrics", "/openapi.json") else "other"


class Metrics:
    """The server's metrics. ``sample`` callbacks give the live values (queue depth, versions)."""

    def __init__(
        self,
        queue_depth: Callable[[], int],
        versions: Callable[[], dict[str, int]],
        deduplicated: Callable[[], int],
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sortition_http_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "sortition_http_request_duration_seconds",
            "Request latency by route",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.accepted = Counter(
            "sortition_events_accepted", "Event rows committed (new or duplicate)", ["kind"], registry=r
        )
        self.rejected = Counter("sortition_events_rejected", "Event rows rejected by validation", registry=r)
        self.overloaded = Counter(
            "sortition_events_overloaded_requests", "Ingestion requests answered 429 (queue full)", registry=r
        )
        self.ofrep = Counter("sortition_ofrep_evaluations", "OFREP flag evaluations", registry=r)
        depth = Gauge("sortition_ingest_queue_depth", "Event rows waiting for the group commit", registry=r)
        depth.set_function(lambda: float(queue_depth()))
        r.register(_LiveCollector(versions, deduplicated))
        self.minutes = MinuteCounts()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    """Values read when scraped: the published versions, and the committer's deduplicated rows."""

    def __init__(self, versions: Callable[[], dict[str, int]], deduplicated: Callable[[], int]):
        self._versions = versions
        self._deduplicated = deduplicated

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "sortition_published_version", "Configuration version served", labels=["environment"]
        )
        for env, version in sorted(self._versions().items()):
            family.add_metric([env], float(version))
        yield family
        yield CounterMetricFamily(
            "sortition_events_deduplicated",
            "Committed event rows already stored (retries, repeats)",
            value=float(self._deduplicated()),
        )


class MinuteCounts:
    """Accepted and rejected event rows per minute over the last hour (for the status page)."""

    def __init__(self) -> None:
        self._counts: collections.OrderedDict[int, list[int]] = collections.OrderedDict()

    def add(self, accepted: int, rejected: int, now: float | None = None) -> None:
        minute = int((time.time() if now is None else now) // 60)
        slot = self._counts.setdefault(minute, [0, 0])
        slot[0] += accepted
        slot[1] += rejected
        while self._counts and next(iter(self._counts)) < minute - 60:
            self._counts.popitem(last=False)

    def last_hour(self, now: float | None = None) -> tuple[int, int]:
        minute = int((time.time() if now is None else now) // 60)
        a = sum(v[0] for m, v in self._counts.items() if m > minute - 60)
        b = sum(v[1] for m, v in self._counts.items() if m > minute - 60)
        return a, b
