"""Bandit events keep the actions offered at each decision (Sortition's sortitionOfferedActions field),
on DuckDB and PostgreSQL; stores written before that column existed are upgraded when opened."""

from __future__ import annotations

import pytest
from tests.store._events import bandit, outcome

from sortition.store import EventStore
from sortition.store.records import bandit_row
from sortition.store.schema import SCHEMA_VERSION

OFFERED = {
    "x": {"numericAttributes": {"price": 9.5}, "categoricalAttributes": {"brand": "acme"}},
    "y": {"numericAttributes": {"price": 12}},  # a missing group reads as empty
}


def test_offered_actions_round_trip_and_old_shaped_events_read_none(store):
    store.append_bandit_events([bandit("s1", "x", sortitionOfferedActions=OFFERED), bandit("s2", "y")])
    store.append_outcomes([outcome("s1", 2.0), outcome("s2", 3.0)])
    frame = store.bandit_rewards("revenue").set_index("subject")
    assert frame.loc["s1", "offered_actions"] == {
        "x": {"numericAttributes": {"price": 9.5}, "categoricalAttributes": {"brand": "acme"}},
        "y": {"numericAttributes": {"price": 12}, "categoricalAttributes": {}},
    }
    assert frame.loc["s2", "offered_actions"] is None
    assert frame.loc["s1", "reward"] == 2.0 and frame.loc["s2", "reward"] == 3.0


@pytest.mark.parametrize(
    "offered, problem",
    [
        ({"y": {}}, "does not contain the chosen action 'x'"),
        ({}, "non-empty dict"),
        ({"x": {"numericAttributes": {"price": "cheap"}}}, "not a finite number"),
        ({"x": {"attributes": {}}}, "numericAttributes"),
    ],
)
def test_bad_offered_actions_are_named_and_nothing_is_written(store, offered, problem):
    with pytest.raises(ValueError, match="sortitionOfferedActions") as err:
        store.append_bandit_events([bandit("s0", "x"), bandit("s1", "x", sortitionOfferedActions=offered)])
    assert problem in str(err.value) and "(events 1)" in str(err.value)
    assert store.counts()["bandit"] == 0


def test_event_ids_of_events_without_offered_actions_are_unchanged():
    plain = bandit("s1", "x")
    # the id the first schema derived: offered actions enter the content only when logged
    assert bandit_row(plain)[0] == bandit_row({**plain, "sortitionOfferedActions": None})[0]
    assert bandit_row(plain)[0] != bandit_row({**plain, "sortitionOfferedActions": OFFERED})[0]


def _raw(store_url: str):
    """A raw connection (DuckDB or psycopg) to the store's database."""
    if store_url.startswith("postgresql"):
        import psycopg

        return psycopg.connect(store_url, autocommit=True)
    import duckdb

    return duckdb.connect(store_url)


def test_a_store_from_schema_1_is_upgraded_when_opened(store_url):
    with EventStore(store_url) as s:
        s.append_bandit_events([bandit("old", "x")])
    con = _raw(store_url)  # make it a schema-1 store: no offered_actions column
    con.execute("ALTER TABLE bandit_events DROP COLUMN offered_actions")
    con.execute("UPDATE sortition_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with EventStore(store_url) as s:
        s.append_bandit_events([bandit("new", "x", minutes=5, sortitionOfferedActions=OFFERED)])
        frame = s.bandit_rewards("revenue").set_index("subject")
        assert frame.loc["old", "offered_actions"] is None
        assert set(frame.loc["new", "offered_actions"]) == {"x", "y"}
    con = _raw(store_url)
    assert con.execute("SELECT value FROM sortition_meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
    con.close()
