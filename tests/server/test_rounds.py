"""DuckDB has one writer: while ``sortition serve`` holds the store, ``sortition round http://SERVER``
has the server run the round on its own store and publish it. Without a server, ``round --publish``
publishes directly."""

from __future__ import annotations

import httpx
import numpy as np

from sortition.experiment.simulation import visitor_attributes
from sortition.scenarios import make_scenario
from sortition.serving import Client, Configuration
from sortition.store import EventStore, HttpEventLogger
from sortition.store.publishing import current, publications
from tests.cli_helpers import invoke
from tests.server.conftest import UFC, LiveServer, prepare

FLAG, METRIC = "checkout", "outcome"


def _create(scenario) -> list[str]:
    """The first run's options: create the experiment, publish its round-0 plan."""
    return ["--arms", ",".join(scenario.arms), "--engine", "stratified", "--publish"]


def _round(target: str, tmp_path, *extra: str):
    common = f"--flag {FLAG} --metric {METRIC} --kind continuous".split()
    paths = ["--state", str(tmp_path / "state.json"), "--out", str(tmp_path / "out")]
    return invoke(["round", target, *common, *paths, *extra])


def test_rounds_run_in_the_server_while_it_holds_the_duckdb_store(tmp_path):
    scenario = make_scenario("multi_winner", 3)
    location = str(tmp_path / "held.duckdb")
    keys = prepare(location)
    server = LiveServer(location).start()
    try:
        first = _round(server.url, tmp_path, *_create(scenario), "--key", keys.admin)
        assert first.exit_code == 0, first.text
        assert "published to production" in first.text
        poll = httpx.get(server.url + "/api/flag-config/v1/config", params={"apiKey": keys.sdk})
        assert poll.headers["X-Sortition-Version"] == "2" and FLAG in poll.json()["flags"]
        assert "new-user-onboarding" in poll.json()["flags"]  # the other flags are kept

        # a service serves the plan and logs exposures and outcomes back to the server
        client_logger = HttpEventLogger(server.url, keys.ingest, flush_interval=0.02)
        client = Client(Configuration.from_json(poll.json()), assignment_logger=client_logger)
        rng = np.random.default_rng(4)
        visitors = scenario.sample_visitors(300, rng)
        subjects = [f"v{i}" for i in range(300)]
        arms = [
            client.get_assignment(FLAG, s, a, scenario.arms[0])
            for s, a in zip(subjects, visitor_attributes(visitors), strict=True)
        ]
        y = scenario.sample_outcomes(visitors, np.array([scenario.arms.index(a) for a in arms]), rng)
        for s, v in zip(subjects, y, strict=True):
            client_logger.log_outcome(s, METRIC, float(v))
        assert client_logger.flush(30) and client_logger.dropped == 0
        client_logger.close()

        second = _round(server.url, tmp_path, "--publish", "--key", keys.admin)
        assert second.exit_code == 0, second.text
        assert "read 300 new exposures" in second.text
        poll = httpx.get(server.url + "/api/flag-config/v1/config", params={"apiKey": keys.sdk})
        assert poll.headers["X-Sortition-Version"] == "3"
        page = httpx.get(server.url + "/").text
        assert FLAG in page and "production" in page and "round of" in page

        # a publish that starts an environment beside others says so (a typo's only trace)
        typo = invoke(["publish", str(UFC / "flags-v1.json"), "--server", server.url, "--key", keys.admin,
                       "-e", "prodution"])
        assert typo.exit_code == 0, typo.text
        assert ("Published version 4 to prodution: a new environment (did you mean 'production'?); keys of "
                "'production' do not see it.") in typo.text

        # the same through the CLI's direct path is refused with what to do instead
        held = invoke(["publish", location, str(UFC / "flags-v1.json")])
        assert held.exit_code == 2 and "--server URL --key ADMIN_KEY" in held.text
        assert _round(server.url, tmp_path).exit_code == 2  # no key
    finally:
        server.kill()
    with EventStore(location) as store:
        assert current(store)["production"].version == 3
        assert [p.action for p in publications(store)] == ["publish", "round", "round", "publish"]


def test_round_publish_without_a_server(tmp_path):
    scenario = make_scenario("multi_winner", 3)
    location = str(tmp_path / "local.duckdb")
    made = _round(location, tmp_path, *_create(scenario), "--environment", "staging")
    assert made.exit_code == 0, made.text
    assert "Published version 1 to staging" in made.text
    with EventStore(location) as store:
        assert current(store)["staging"].version == 1 and "production" not in current(store)


def test_a_server_round_blocked_by_its_sample_ratio_check_exits_as_a_local_one(tmp_path):
    """--allow-srm and the exit code 3 mean the same through the server as on a local store."""
    from sortition.store.publishing import create_key
    from tests.cli.test_guards import FLAG as SRM_FLAG
    from tests.cli.test_guards import METRIC as SRM_METRIC
    from tests.cli.test_guards import _create, _serve

    store, state = _create(tmp_path)
    _serve(store, 900, seed=2, drop_arm="arm_2", drop_share=0.5)  # half of one arm's exposures lost
    with EventStore(str(store)) as events:
        admin = create_key(events, "admin")[0]
        versions = events.configuration_versions()
    before = state.read_bytes()
    server = LiveServer(str(store)).start()
    try:
        args = ["round", server.url, "--key", admin, "--flag", SRM_FLAG, "--metric", SRM_METRIC,
                "--state", str(state), "--out", str(tmp_path / "out")]
        blocked = invoke(args)
        assert blocked.exit_code == 3, blocked.text
        assert "sample-ratio mismatch" in blocked.text and "--allow-srm" in blocked.text
        assert state.read_bytes() == before
        allowed = invoke([*args, "--allow-srm"])
        assert allowed.exit_code == 0, allowed.text
        assert "new exposures" in allowed.text and state.read_bytes() != before
    finally:
        server.kill()
    with EventStore(str(store)) as events:
        assert len(events.configuration_versions()) == len(versions) + 1
