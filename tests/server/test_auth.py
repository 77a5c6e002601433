"""Wrong, missing and wrong-role keys on every endpoint: 401 for unknown/missing, 403 for the wrong role."""

from __future__ import annotations

import pytest

# (method, path, body, roles allowed besides admin)
ENDPOINTS = [
    ("GET", "/api/flag-config/v1/config", None, {"sdk", "client"}),
    ("GET", "/api/flag-config/v1/bandits", None, {"sdk"}),
    ("POST", "/ofrep/v1/evaluate/flags/kill-switch", {"context": {"targetingKey": "a"}}, {"sdk", "client"}),
    ("POST", "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "a"}}, {"sdk", "client"}),
    ("POST", "/api/v1/events", [], {"ingest"}),
    ("GET", "/api/v1/versions", None, set()),
    ("POST", "/api/v1/rollback", {"version": 1}, set()),
    ("POST", "/api/v1/configurations", {"flags": {"flags": {}}}, set()),
    ("POST", "/api/v1/rounds", {}, set()),
]


def _call(client, method, path, body, headers=None, params=None):
    return client.request(method, path, json=body, headers=headers or {}, params=params or {})


@pytest.mark.parametrize("method,path,body,roles", ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_keys_and_roles_on_every_endpoint(app_client, method, path, body, roles):
    client, keys, _ = app_client
    assert _call(client, method, path, body).status_code == 401
    bad = "srt_000000000000_" + "1" * 40
    assert _call(client, method, path, body, {"Authorization": f"Bearer {bad}"}).status_code == 401
    assert _call(client, method, path, body, params={"apiKey": "not-a-key"}).status_code == 401
    for role in ("sdk", "client", "ingest", "admin"):
        key = getattr(keys, role)
        response = _call(client, method, path, body, {"Authorization": f"Bearer {key}"})
        if role == "admin" or role in roles:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code)
            assert "role" in response.json()["error"]
    # the query parameter (as Eppo's SDKs send it) and X-API-Key work as the header does
    allowed = next(iter(roles), "admin")
    key = getattr(keys, allowed)
    assert _call(client, method, path, body, params={"apiKey": key}).status_code not in (401, 403)
    assert _call(client, method, path, body, {"X-API-Key": key}).status_code not in (401, 403)


def test_environment_keys_see_only_their_environment(app_client):
    client, keys, _ = app_client
    # the staging key is valid, but staging has nothing published yet
    response = client.get("/api/flag-config/v1/config", params={"apiKey": keys.staging_sdk})
    assert response.status_code == 404 and "staging" in response.json()["error"]
    # an sdk key of production cannot pick another environment
    response = client.get("/api/flag-config/v1/config", params={"apiKey": keys.sdk, "environment": "staging"})
    assert response.status_code == 200 and response.headers["X-Sortition-Environment"] == "production"


def test_revoked_key_is_refused_after_refresh(app_client):
    from sortition.store.publishing import KeyRing, list_keys, revoke_key

    client, keys, _ = app_client
    state = client.app.state.sortition
    key_id = keys.sdk.split("_")[1]
    assert client.get("/api/flag-config/v1/config", params={"apiKey": keys.sdk}).status_code == 200
    revoke_key(state.store, key_id)
    state.catalog.refresh()
    assert client.get("/api/flag-config/v1/config", params={"apiKey": keys.sdk}).status_code == 401
    assert [k.revoked_at is not None for k in list_keys(state.store) if k.key_id == key_id] == [True]
    assert KeyRing.load(state.store).authenticate(keys.sdk) is None


def test_config_documents_etag_gzip_and_client_format(app_client):
    from sortition.serving import Client, Configuration

    client, keys, _ = app_client
    plain = client.get(
        "/api/flag-config/v1/config",
        params={"apiKey": keys.sdk, "sdkName": "python"},
        headers={"Accept-Encoding": "gzip"},
    )
    assert plain.status_code == 200 and plain.headers["Content-Encoding"] == "gzip"
    assert plain.json()["format"] == "SERVER" and "kill-switch" in plain.json()["flags"]
    assert plain.headers["X-Sortition-Version"] == "1"
    again = client.get(
        "/api/flag-config/v1/config",
        params={"apiKey": keys.sdk},
        headers={"If-None-Match": plain.headers["ETag"]},
    )
    assert again.status_code == 304 and again.headers["X-Sortition-Version"] == "1"
    obfuscated = client.get("/api/flag-config/v1/config", params={"apiKey": keys.client}).json()
    assert obfuscated["format"] == "CLIENT" and "kill-switch" not in obfuscated["flags"]
    # the obfuscated document serves the same assignments as the plain one
    ours, theirs = Client(Configuration.from_json(plain.json())), Client(Configuration.from_json(obfuscated))
    for i in range(200):
        attrs = {"country": ["US", "UK", "FR"][i % 3], "age": i % 80}
        assert ours.get_assignment("new-user-onboarding", f"u{i}", attrs, "d") == theirs.get_assignment(
            "new-user-onboarding", f"u{i}", attrs, "d"
        )
    bandits = client.get("/api/flag-config/v1/bandits", params={"apiKey": keys.sdk})
    assert bandits.status_code == 200 and "banner_bandit" in bandits.json()["bandits"]
