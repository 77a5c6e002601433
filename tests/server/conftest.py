"""Fixtures of the server tests: stores with keys and a published configuration, in-process apps
(Starlette's TestClient) and live ``sortition serve`` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sortition.store import EventStore
from sortition.store.publishing import create_key, publish
from tests.store.conftest import NO_POSTGRES, POSTGRES_URL, _postgres_schemas, _schema_url  # noqa: F401

UFC = Path(__file__).resolve().parents[1] / "conformance" / "eppo" / "ufc"
ROOT = Path(__file__).resolve().parents[2]


def read(name: str) -> str:
    return (UFC / name).read_text()


CARRIED_FLAG = "sortition-carried-plan"


def carried_plan_flag(key: str = CARRIED_FLAG) -> dict:
    """A loop plan's flag whose segments' shards were carried over from earlier plans (``carry_layout``):
    several ranges per split, which Eppo's own vectors never have."""
    from dataclasses import replace

    from sortition.experiment import carry_layout, make_plan, plan_to_flag
    from sortition.rules import Condition, Rule

    arms = ("control", "a", "b")
    segments = [(0, Rule((Condition("country", "ONE_OF", ["US", "UK"]),)))]
    plans = [make_plan(arms, segments, {0: dict(zip(arms, w))}, default_allocation=dict(zip(arms, w[::-1])))
             for w in ((0.5, 0.3, 0.2), (0.2, 0.3, 0.5), (0.4, 0.1, 0.5))]
    carried = plans[0]
    for plan in plans[1:]:
        carried = replace(plan, segments=(carry_layout(plan.segments[0], carried.segments[0], arms),),
                          default=carry_layout(plan.default, carried.default, arms))
    flag = plan_to_flag(carried, key)
    assert max(len(split["shards"][0]["ranges"]) for a in flag["allocations"] for split in a["splits"]) > 1
    return flag


def combined_flags() -> dict:
    """flags-v1.json, the bandit flags and a carried loop plan in one document (a version is a whole
    configuration)."""
    plain, bandit = json.loads(read("flags-v1.json")), json.loads(read("bandit-flags-v1.json"))
    return {
        **plain,
        "flags": {**plain["flags"], **bandit["flags"], CARRIED_FLAG: carried_plan_flag()},
        "banditReferences": bandit["banditReferences"],
        "bandits": bandit["bandits"],
    }


def bandit_models() -> dict:
    return json.loads(read("bandit-models-v1.json"))


@dataclass
class Keys:
    sdk: str
    client: str
    ingest: str
    admin: str
    staging_sdk: str


def prepare(location: str) -> Keys:
    """Create keys and publish the combined conformance configuration to production."""
    with EventStore(location) as store:
        keys = Keys(
            *(create_key(store, role)[0] for role in ("sdk", "client", "ingest", "admin")),
            create_key(store, "sdk", "staging")[0],
        )
        publish(store, combined_flags(), bandit_models(), "production")
    return keys


@pytest.fixture(params=["duckdb", "postgresql"])
def any_store(request, tmp_path, _postgres_schemas) -> str:  # noqa: F811 (the imported fixture)
    if request.param == "duckdb":
        return str(tmp_path / "events.duckdb")
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    return _schema_url(_postgres_schemas)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python -m sortition serve STORE`` in a subprocess on a free loopback port."""

    def __init__(self, location: str, refresh: float = 0.2, port: int | None = None):
        self.location = location
        self.refresh = refresh
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> LiveServer:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sortition",
                "serve",
                self.location,
                "--port",
                str(self.port),
                "--refresh",
                str(self.refresh),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("the server did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.proc.stdout.read().decode() if self.proc and self.proc.poll() is not None else ""


@pytest.fixture
def live(tmp_path) -> Iterator[tuple[LiveServer, Keys]]:
    """A live server over a fresh DuckDB store with keys and the conformance configuration."""
    location = str(tmp_path / "live.duckdb")
    keys = prepare(location)
    server = LiveServer(location).start()
    try:
        yield server, keys
    finally:
        server.kill()


@pytest.fixture
def app_client(tmp_path):
    """(TestClient over an in-process app, Keys, the store location)."""
    from starlette.testclient import TestClient

    from sortition.server import Settings, create_app

    location = str(tmp_path / "app.duckdb")
    keys = prepare(location)
    app = create_app(location, Settings(refresh_interval=0.1))
    with TestClient(app) as client:
        yield client, keys, location
