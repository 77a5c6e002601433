"""Keys (hashed, shown once), environments, publish / rollback / versions, on DuckDB and PostgreSQL;
the CLI commands; a bad document is refused with its path and the last good version keeps serving."""

from __future__ import annotations

import json

import pytest

from sortition.store import EventStore
from sortition.store.publishing import (
    KeyRing,
    create_key,
    current,
    list_keys,
    publications,
    publish,
    rollback,
)
from sortition.store.schema import SCHEMA_VERSION
from tests.cli_helpers import invoke
from tests.server.conftest import UFC, bandit_models, combined_flags, read


def test_keys_are_stored_hashed_and_checked(any_store):
    with EventStore(any_store) as store:
        key, made = create_key(store, "sdk", "staging", "web")
        admin, _ = create_key(store, "admin")
        raw = store._backend.frame("SELECT * FROM api_keys")
        assert key not in raw.to_string() and all(key not in str(v) for v in raw.to_numpy().ravel())
        ring = KeyRing.load(store)
        assert ring.authenticate(key).role == "sdk" and ring.authenticate(key).environment == "staging"
        assert ring.authenticate(admin).environment is None
        assert ring.authenticate(key[:-1] + ("0" if key[-1] != "0" else "1")) is None
        assert ring.authenticate("srt_" + made.key_id + "_" + "f" * 40) is None
        assert ring.authenticate("") is None and ring.authenticate(None) is None
        assert [k.role for k in list_keys(store)] == ["sdk", "admin"]
        with pytest.raises(ValueError, match="role 'superuser' is unknown; use one of 'sdk', 'client'"):
            create_key(store, "superuser")
        with pytest.raises(ValueError, match=r"role 'admn' is unknown \(did you mean 'admin'\?\)"):
            create_key(store, "admn")
        with pytest.raises(ValueError, match="environment 'bad name'"):
            create_key(store, "sdk", "bad name")


def test_publish_rollback_and_history_per_environment(any_store):
    with EventStore(any_store) as store:
        v1, _ = publish(store, read("flags-v1.json"), environment="production")
        v2, _ = publish(store, combined_flags(), bandit_models(), environment="staging")
        publish(store, combined_flags(), bandit_models(), environment="production")
        assert {e: p.version for e, p in current(store).items()} == {"production": 3, "staging": 2}
        back = rollback(store, 1, "production")
        assert back.action == "rollback" and current(store)["production"].version == 1
        assert [p.version for p in publications(store, "production")] == [1, 3, 1]
        with pytest.raises(LookupError, match="saved versions"):
            rollback(store, 99, "production")
        # a typo would have started a new environment while production kept serving version 1
        with pytest.raises(ValueError, match=r"environment 'prodution' has never served a configuration, "
                                             r"so there is nothing to roll back \(did you mean "
                                             r"'production'\?\); the environments are "
                                             r"'production', 'staging'"):
            rollback(store, 3, "prodution")
        assert sorted(current(store)) == ["production", "staging"] and len(publications(store)) == 4
        # a bad document names its path; nothing is saved and production keeps version 1
        bad = json.loads(read("flags-v1.json"))
        bad["flags"]["kill-switch"]["allocations"][0]["splits"][0]["shards"] = "all"
        with pytest.raises(ValueError, match=r"flags\.kill-switch\.allocations\[0\]\.splits\[0\]\.shards"):
            publish(store, bad)
        with pytest.raises(ValueError, match="banditReferences"):
            publish(store, combined_flags())  # flags using bandits, without their models
        assert store.configuration_versions() == [1, 2, 3]
        assert current(store)["production"].version == 1


def test_cli_keys_publish_versions_rollback(tmp_path):
    store = str(tmp_path / "cli.duckdb")
    made = invoke(["keys", "create", store, "--role", "sdk", "--environment", "staging"])
    assert made.exit_code == 0, made.output
    assert "note:" not in made.text  # no environment serves yet: a key may come first
    key = made.output.strip().splitlines()[-1]
    assert key.startswith("srt_") and len(key) == 57
    with EventStore(store) as s:
        assert KeyRing.load(s).authenticate(key).environment == "staging"
    listed = invoke(["keys", "list", store])
    assert "sdk" in listed.text and key not in listed.output
    assert invoke(["publish", store, UFC / "flags-v1.json"]).exit_code == 0
    both = invoke(
        [
            "publish",
            store,
            UFC / "bandit-flags-v1.json",
            "--bandits",
            UFC / "bandit-models-v1.json",
            "-e",
            "staging",
        ]
    )
    assert both.exit_code == 0
    assert "version 2 to staging: a new environment; keys of 'production' do not see it" in both.text
    again = invoke(["publish", store, UFC / "flags-v1.json", "-e", "staging"])
    assert again.exit_code == 0 and again.text.strip().endswith("Published version 3 to staging.")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flags": {"f": {"key": "f", "enabled": "yes"}}}))
    refused = invoke(["publish", store, bad])
    assert refused.exit_code == 2 and "was not published" in refused.text and "flags.f" in refused.text
    listing = invoke(["versions", store])
    assert (
        listing.exit_code == 0
        and "production: version 1" in listing.text
        and "staging: version 3" in listing.text
    )
    assert invoke(["rollback", store, "2"]).exit_code == 0
    assert "production: version 2" in invoke(["versions", store]).text
    typo = invoke(["keys", "create", store, "--role", "sdk", "-e", "stagin"])
    assert typo.exit_code == 0 and typo.output.strip().splitlines()[-1].startswith("srt_")  # the key, last
    assert ("note: environment 'stagin' serves no configuration yet (did you mean 'staging'?); "
            "the environments are 'production', 'staging'") in typo.text
    assert "note:" not in invoke(["keys", "create", store, "--role", "sdk", "-e", "staging"]).text
    missing = invoke(["rollback", store, "7"])
    assert missing.exit_code == 2 and "does not exist" in missing.text
    assert "give STORE VERSION" in invoke(["rollback", "7"]).text
    revoked = invoke(["keys", "revoke", store, key.split("_")[1]])
    assert revoked.exit_code == 0
    with EventStore(store) as s:
        assert KeyRing.load(s).authenticate(key) is None


def test_a_schema_2_store_is_upgraded_in_place(tmp_path):
    import duckdb

    path = str(tmp_path / "old.duckdb")
    with EventStore(path) as s:
        s.append_outcomes(
            [{"subject": "a", "metric": "m", "value": 1.0, "timestamp": "2024-01-01T00:00:00Z"}]
        )
    con = duckdb.connect(path)
    con.execute("DROP TABLE api_keys")
    con.execute("DROP TABLE publications")
    con.execute("UPDATE sortition_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    with EventStore(path) as s:
        assert s.counts()["outcome"] == 1
        publish(s, read("flags-v1.json"))
        assert current(s)["production"].version == 1
    con = duckdb.connect(path)
    assert con.execute("SELECT value FROM sortition_meta WHERE key = 'schema_version'").fetchall() == [
        (str(SCHEMA_VERSION),)
    ]
    con.close()


def test_a_refused_publish_or_key_creates_no_store(tmp_path):
    """A typo'd or bad document, a bad environment or an unknown role is refused before STORE is
    opened, so no empty store is left behind at that path."""
    store = tmp_path / "new.duckdb"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flags": {"f": {"key": "f", "enabled": "yes"}}}))
    for args in (
        [store, bad],
        [store, tmp_path / "missing.json"],
        ["-e", "prod env", store, UFC / "flags-v1.json"],
    ):
        refused = invoke(["publish", *args])
        assert refused.exit_code == 2 and "error:" in refused.text
        assert not store.exists(), args
    for args in (["--role", "admn"], ["--role", "sdk", "-e", "prod env"]):
        refused = invoke(["keys", "create", store, *args])
        assert refused.exit_code == 2 and ("'admn'" in refused.text or "'prod env'" in refused.text)
        assert not store.exists(), args
    assert invoke(["publish", store, UFC / "flags-v1.json"]).exit_code == 0 and store.exists()
    # was an empty table
    assert invoke(["keys", "list", store]).text == f"No keys yet: sortition keys create {store} --role sdk"
