"""OpenFeature: the OFREP provider against the live server, and the in-process SortitionProvider,
resolve the same values as Sortition's Client; bulk evaluation has an ETag; bandits via actions."""

from __future__ import annotations

import random

import httpx
import pytest

from sortition.serving import Client, Configuration
from tests.server.conftest import bandit_models, combined_flags
from tests.server.test_eppo_python import BANDIT_ACTIONS, _subject

openfeature = pytest.importorskip("openfeature")
ofrep = pytest.importorskip("openfeature.contrib.provider.ofrep")

from openfeature.evaluation_context import EvaluationContext  # noqa: E402

_METHODS = {
    "STRING": ("get_string_details", "zz"),
    "INTEGER": ("get_integer_details", -7),
    "NUMERIC": ("get_float_details", -7.5),
    "BOOLEAN": ("get_boolean_details", False),
    "JSON": ("get_object_details", {"d": 1}),
}


def _of_client(provider, name: str):
    from openfeature import api

    api.set_provider(provider, domain=name)
    return api.get_client(domain=name)


def _compare(of_client, ours: Client, per_flag: int, seed: int) -> int:
    flags = combined_flags()["flags"]
    rng = random.Random(seed)
    compared = 0
    for flag_key, flag in sorted(flags.items()):
        kind = flag["variationType"]
        method, default = _METHODS[kind]
        for i in range(per_flag):
            key, attrs = _subject(rng, i)
            details = getattr(of_client, method)(flag_key, default, EvaluationContext(key, attrs))
            mine = ours.get_assignment(flag_key, key, attrs, default, variation_type=kind)
            assert details.value == mine, (flag_key, key, attrs, details, mine)
            compared += 1
    return compared


def test_ofrep_provider_resolves_what_client_resolves(live):
    server, keys = live
    ours = Client(Configuration.from_json(combined_flags(), bandit_models()))
    provider = ofrep.OFREPProvider(
        server.url, headers_factory=lambda: {"Authorization": f"Bearer {keys.sdk}"}
    )
    assert _compare(_of_client(provider, "ofrep"), ours, 60, seed=11) >= 60 * 20

    # a bandit decision: the actions in the context, the object {variation, action} back
    rng = random.Random(3)
    decided = 0
    for i in range(50):
        key, attrs = _subject(rng, i)
        answer = httpx.post(
            f"{server.url}/ofrep/v1/evaluate/flags/banner_bandit_flag",
            json={"context": {"targetingKey": key, **attrs, "actions": BANDIT_ACTIONS}},
            headers={"Authorization": f"Bearer {keys.sdk}"},
        ).json()
        mine = ours.get_bandit_action_details("banner_bandit_flag", key, attrs, BANDIT_ACTIONS, "")
        expected = None if mine.details.is_default else {"variation": mine.variation, "action": mine.action}
        assert answer.get("value") == expected, answer
        assert answer["metadata"]["version"] == 1
        decided += mine.action is not None
    assert decided > 10

    # errors as OFREP defines them
    h = {"Authorization": f"Bearer {keys.sdk}"}
    missing = httpx.post(
        f"{server.url}/ofrep/v1/evaluate/flags/nope", json={"context": {"targetingKey": "a"}}, headers=h
    )
    assert missing.status_code == 404 and missing.json()["errorCode"] == "FLAG_NOT_FOUND"
    no_key = httpx.post(f"{server.url}/ofrep/v1/evaluate/flags/kill-switch", json={"context": {}}, headers=h)
    assert no_key.status_code == 400 and no_key.json()["errorCode"] == "TARGETING_KEY_MISSING"
    bad = httpx.post(f"{server.url}/ofrep/v1/evaluate/flags/kill-switch", content=b"{", headers=h)
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_CONTEXT"

    # bulk: every flag, with an ETag that answers 304 while nothing changed
    body = {"context": {"targetingKey": "alice", "country": "US"}}
    bulk = httpx.post(f"{server.url}/ofrep/v1/evaluate/flags", json=body, headers=h)
    assert bulk.status_code == 200 and len(bulk.json()["flags"]) == len(combined_flags()["flags"])
    by_key = {f["key"]: f for f in bulk.json()["flags"]}
    assert by_key["new-user-onboarding"].get("value") == ours.get_assignment(
        "new-user-onboarding", "alice", {"country": "US"}, "x"
    )
    again = httpx.post(
        f"{server.url}/ofrep/v1/evaluate/flags",
        json=body,
        headers={**h, "If-None-Match": bulk.headers["ETag"]},
    )
    assert again.status_code == 304
    other = httpx.post(
        f"{server.url}/ofrep/v1/evaluate/flags",
        json={"context": {"targetingKey": "bob"}},
        headers={**h, "If-None-Match": bulk.headers["ETag"]},
    )
    assert other.status_code == 200


def test_in_process_provider_resolves_what_client_resolves():
    from sortition.openfeature import SortitionProvider

    ours = Client(Configuration.from_json(combined_flags(), bandit_models()))
    client = _of_client(SortitionProvider(ours, "production", 1), "inproc")
    assert _compare(client, ours, 100, seed=5) >= 100 * 20
    rng = random.Random(9)
    for i in range(100):
        key, attrs = _subject(rng, i)
        details = client.get_object_details(
            "banner_bandit_flag", {}, EvaluationContext(key, {**attrs, "actions": BANDIT_ACTIONS})
        )
        mine = ours.get_bandit_action_details("banner_bandit_flag", key, attrs, BANDIT_ACTIONS, "")
        expected = {} if mine.details.is_default else {"variation": mine.variation, "action": mine.action}
        assert details.value == expected
    missing = client.get_string_details("nope", "dflt", EvaluationContext("a"))
    assert missing.value == "dflt" and missing.error_code is not None
    mismatch = client.get_integer_details(
        "new-user-onboarding", 3, EvaluationContext("alice", {"country": "US"})
    )
    assert mismatch.value == 3 and str(mismatch.error_code).endswith("TYPE_MISMATCH")
