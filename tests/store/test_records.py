"""Validation at the boundary and deterministic event ids."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.store import EventStore
from sortition.store.records import build_rows, to_utc
from store._events import assignment, bandit, outcome


def test_bad_batch_names_fields_and_first_bad_events_and_writes_nothing(store):
    events = [assignment(f"s{i}") for i in range(12)]
    for i in (3, 5, 7, 8, 9, 10, 11):
        del events[i]["subject"]
    events[4]["timestamp"] = "yesterday"
    with pytest.raises(ValueError) as err:
        store.append_assignments(events)
    message = str(err.value)
    assert "'subject' is missing (events 3, 5, 7, 8, 9 and 2 more)" in message
    assert "'timestamp'" in message and "events 4)" in message
    assert "nothing was written" in message
    assert store.counts()["assignment"] == 0


@pytest.mark.parametrize(
    ("kind", "event", "field"),
    [
        ("bandit", bandit("s", probability=0.0), "actionProbability"),
        ("bandit", bandit("s", probability=1.5), "actionProbability"),
        ("bandit", {**bandit("s"), "subjectNumericAttributes": [1, 2]}, "subjectNumericAttributes"),
        ("outcome", outcome("s", value=float("nan")), "value"),
        ("outcome", outcome("s", value="lots"), "value"),
        ("outcome", {**outcome("s"), "metric": ""}, "metric"),
        ("outcome", {**outcome("s"), "timestamp": 1.7e12}, "timestamp"),
        ("assignment", assignment("s", propensity="0"), "propensity"),
        ("assignment", assignment("s", round="1.5"), "round"),
        ("assignment", {**assignment("s"), "variation": 3.5}, "variation"),
        ("assignment", {**assignment("s"), "eventId": ""}, "eventId"),
    ],
)
def test_each_bad_field_is_named(kind, event, field):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        build_rows([assignment("ok"), event] if kind == "assignment" else [event], kind)


def test_a_failed_batch_of_several_kinds_writes_nothing(store):
    with pytest.raises(ValueError, match="outcome events rejected"):
        store.append(assignments=[assignment("s1")], outcomes=[outcome("s1"), {"subject": "s2"}])
    assert store.counts() == {"assignment": 0, "bandit": 0, "outcome": 0, "configuration": 0}


def test_one_id_with_two_contents_in_a_batch_is_refused():
    with pytest.raises(ValueError, match="given twice with different content"):
        build_rows([outcome("s", 1.0, event_id="e1"), outcome("s", 2.0, event_id="e1")], "outcome")


@pytest.mark.parametrize("kind, make", [("assignment", assignment), ("bandit", bandit), ("outcome", outcome)])
def test_an_event_more_than_a_day_in_the_future_is_refused(kind, make):
    now = dt.datetime.now(dt.timezone.utc)
    soon = {**make("s"), "timestamp": (now + dt.timedelta(hours=20)).isoformat()}  # a fast clock: kept
    assert len(build_rows([soon], kind)) == 1
    # was stored, and counted in every attribution window to come
    later = {**make("s"), "timestamp": (now + dt.timedelta(days=3, hours=1)).isoformat()}
    with pytest.raises(ValueError, match=r"field 'timestamp' .*Z is 3 days in the future \(the logger's clock, "
                                         r"or a time zone taken for UTC\?\)"):
        build_rows([later], kind)
    assert to_utc(later["timestamp"]) > now.replace(tzinfo=None)  # options (--since, --until) may be ahead


def test_timestamps_become_naive_utc():
    expected = dt.datetime(2024, 5, 1, 10, 0)
    assert to_utc("2024-05-01T10:00:00Z") == expected
    assert to_utc("2024-05-01T12:00:00+02:00") == expected
    assert to_utc(dt.datetime(2024, 5, 1, 10, 0)) == expected
    assert to_utc(expected.replace(tzinfo=dt.timezone.utc).timestamp()) == expected


def test_eppo_extra_logging_at_top_level_fills_the_cell_propensity_and_round_columns():
    event = assignment("s1", cell="optimized", propensity="0.25", round="3", holdout="h1")
    (row,) = build_rows([event], "assignment")
    assert row[7:10] == ("optimized", 0.25, 3)
    assert '"holdout":"h1"' in row[11]


_json_values = st.one_of(st.integers(-10**6, 10**6), st.text(max_size=5), st.booleans(), st.none())


@settings(max_examples=60, deadline=None)
@given(
    # text the store accepts: no NUL, no lone surrogates (those are refused; tests/faults)
    subject=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    min_size=1, max_size=8),
    value=st.floats(-1e6, 1e6, allow_nan=False),
    minutes=st.integers(0, 10**6),
    attrs=st.dictionaries(st.text(max_size=4), _json_values, max_size=4),
)
def test_derived_ids_are_deterministic_and_depend_on_content(subject, value, minutes, attrs):
    (a,) = build_rows([outcome(subject, value, minutes)], "outcome")
    (b,) = build_rows([outcome(subject, value, minutes)], "outcome")
    (c,) = build_rows([outcome(subject, value + 1.0, minutes)], "outcome")
    assert a[0] == b[0] and a[0] != c[0]
    # Attribute order does not change the id; attribute content does.
    first = assignment(subject, attributes=attrs)
    reordered = assignment(subject, attributes=dict(reversed(list(attrs.items()))))
    changed = assignment(subject, attributes={**attrs, "extra-attr": 1})
    ids = [build_rows([e], "assignment")[0][0] for e in (first, reordered, changed)]
    assert ids[0] == ids[1] != ids[2]


def test_dataframe_input_treats_nan_as_missing(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"subject": ["a", "b"], "metric": ["m", "m"], "value": [1.0, 2.0],
                          "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                          "event_id": ["e1", None]})
    with EventStore(str(tmp_path / "x.duckdb")) as store:
        assert store.append_outcomes(frame).inserted == 2
        stored = store.outcomes()
    assert stored["event_id"].iloc[0] == "e1" and len(stored["event_id"].iloc[1]) == 32
