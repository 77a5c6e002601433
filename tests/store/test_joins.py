"""The exposure/outcome join and the decision/reward join, checked against a plain-Python reference."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sortition.store.records import build_rows
from store._events import T0, assignment, bandit, outcome

_counter = itertools.count()


def _aggregate(values: list[float], aggregate: str) -> float:
    if aggregate == "sum":
        return float(sum(values))
    if aggregate == "count":
        return float(len(values))
    return 1.0 if any(v > 0 for v in values) else 0.0


def reference_experiment(assignments, outcomes, flag, metric, window, aggregate, since, until):
    """Rows of ``assignments``/``outcomes`` (table order) -> {subject: (arm, y)}."""
    first: dict[str, tuple] = {}
    for row in assignments:
        event_id, flag_key, _, _, variation, subject, ts = row[:7]
        if flag_key != flag or (until is not None and ts >= until):
            continue
        if subject not in first or (ts, event_id) < first[subject][:2]:
            first[subject] = (ts, event_id, variation)
    result = {}
    for subject, (ts, _, variation) in first.items():
        if since is not None and ts < since:
            continue
        values = [
            value for (_, s, m, value, ots) in outcomes
            if s == subject and m == metric and ots >= ts
            and (window is None or ots < ts + window) and (until is None or ots < until)
        ]
        result[subject] = (variation, _aggregate(values, aggregate))
    return result


def reference_rewards(decisions, outcomes, metric, window, aggregate):
    """Rows of ``bandit_events``/``outcomes`` -> {decision event id: reward}."""
    attributed: dict[str, list[float]] = {row[0]: [] for row in decisions}
    for (_, subject, m, value, ots) in outcomes:
        if m != metric:
            continue
        before = [(row[8], row[0]) for row in decisions
                  if row[3] == subject and row[8] <= ots and (window is None or ots < row[8] + window)]
        if before:
            attributed[max(before)[1]].append(value)
    return {k: _aggregate(v, aggregate) for k, v in attributed.items()}


_subjects = st.sampled_from(["a", "b", "c", "d", "e"])
_minutes = st.integers(0, 12)
_values = st.sampled_from([-1.0, 0.0, 1.0, 2.5])
_windows = st.sampled_from([None, dt.timedelta(minutes=5), 600.0])
_aggregates = st.sampled_from(["sum", "count", "conversion"])
_settings = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(
    exposures=st.lists(st.tuples(_subjects, st.sampled_from(["x", "y", "z"]), _minutes), min_size=1, max_size=15),
    outs=st.lists(st.tuples(_subjects, _values, _minutes, st.booleans()), max_size=25),
    window=_windows, aggregate=_aggregates, since=st.sampled_from([None, 4]), until=st.sampled_from([None, 9]),
)
def test_experiment_join_matches_the_reference(store, exposures, outs, window, aggregate, since, until):
    n = next(_counter)  # a fresh flag and metric per example: the store is shared across examples
    flag, metric = f"flag-{n}", f"metric-{n}"
    a_events = [assignment(s, v, m, flag=flag) for s, v, m in exposures]
    # Outcomes of another metric (the boolean) must be ignored.
    o_events = [outcome(s, v, m, metric=metric if mine else f"other-{n}", event_id=f"{n}-{i}")
                for i, (s, v, m, mine) in enumerate(outs)]
    store.append(assignments=a_events, outcomes=o_events)
    until_ts = None if until is None else T0 + dt.timedelta(minutes=until)
    since_ts = None if since is None else T0 + dt.timedelta(minutes=since)
    win = None if window is None else (window if isinstance(window, dt.timedelta) else dt.timedelta(seconds=window))
    expected = reference_experiment(build_rows(a_events, "assignment"), build_rows(o_events, "outcome"),
                                    flag, metric, win, aggregate, since_ts, until_ts)
    frame = store.experiment_frame(flag, metric, window=window, aggregate=aggregate, since=since_ts,
                                   until=until_ts, covariates=False)
    got = {s: (arm, y) for s, arm, y in zip(frame["subject"], frame["arm"], frame["y"])}
    assert got == expected
    assert list(frame.columns) == ["subject", "arm", "y", "propensity", "cell", "round"]


@_settings
@given(
    decisions=st.lists(st.tuples(_subjects, st.sampled_from(["p", "q"]), _minutes), min_size=1, max_size=12),
    outs=st.lists(st.tuples(_subjects, _values, _minutes), max_size=25),
    window=_windows, aggregate=_aggregates,
)
def test_reward_join_matches_the_reference(store, decisions, outs, window, aggregate):
    n = next(_counter)
    flag, metric = f"bflag-{n}", f"reward-{n}"
    d_events = [bandit(s, a, m, flag=flag) for s, a, m in decisions]
    o_events = [outcome(s, v, m, metric=metric, event_id=f"r{n}-{i}") for i, (s, v, m) in enumerate(outs)]
    store.append(bandit_events=d_events, outcomes=o_events)
    win = None if window is None else (window if isinstance(window, dt.timedelta) else dt.timedelta(seconds=window))
    expected = reference_rewards(build_rows(d_events, "bandit"), build_rows(o_events, "outcome"), metric, win, aggregate)
    frame = store.bandit_rewards(metric, flag_key=flag, window=window, aggregate=aggregate)
    assert dict(zip(frame["event_id"], frame["reward"])) == expected


def test_experiment_frame_carries_logging_and_attributes(store):
    store.append_assignments([
        assignment("u1", "control", 0, cell="control", propensity="0.05", round="1",
                   attributes={"country": "US", "age": 41}),
        assignment("u2", "treat", 1, cell="optimized", propensity="0.7", round="1",
                   attributes={"country": "CA", "plan": "pro"}),
        assignment("u1", "treat", 5, cell="explore", propensity="0.3", round="2"),  # later exposure: ignored
    ])
    store.append_outcomes([outcome("u1", 10.0, 2), outcome("u1", 5.0, 3), outcome("u2", 7.0, 0.5)])
    frame = store.experiment_frame("flag", "revenue", details=True)
    assert list(frame["subject"]) == ["u1", "u2"]
    assert list(frame["arm"]) == ["control", "treat"]
    assert list(frame["y"]) == [15.0, 0.0]  # u2's outcome came before its exposure
    assert list(frame["propensity"]) == [0.05, 0.7] and list(frame["cell"]) == ["control", "optimized"]
    assert list(frame["round"]) == [1, 1] and list(frame["allocation"]) == ["seg-1", "seg-1"]
    assert frame["country"].tolist() == ["US", "CA"] and frame["age"].iloc[0] == 41
    assert frame["plan"].isna().iloc[0] and frame["plan"].iloc[1] == "pro"
    assert store.experiment_frame("flag", "revenue", since=T0 + dt.timedelta(minutes=1))["subject"].tolist() == ["u2"]


def test_bandit_rewards_decode_attribute_groups(store):
    store.append_bandit_events([bandit("u1", "b1", 0, probability=0.2)])
    store.append_outcomes([outcome("u1", 3.0, 1, metric="click")])
    row = store.bandit_rewards("click").iloc[0]
    assert row["subject_numeric_attributes"] == {"age": 30.0}
    assert row["action_categorical_attributes"] == {"brand": "acme"}
    assert (row["action"], row["action_probability"], row["reward"]) == ("b1", 0.2, 3.0)


def test_join_arguments_are_checked(store):
    with pytest.raises(ValueError, match="aggregate must be one of"):
        store.experiment_frame("flag", "revenue", aggregate="mean")
    with pytest.raises(ValueError, match="window must be a positive"):
        store.experiment_frame("flag", "revenue", window=-5)
    with pytest.raises(ValueError, match="until"):
        store.bandit_rewards("revenue", until="not a time")
    store.append_assignments([assignment("u1", attributes={"arm": "left"})])
    with pytest.raises(ValueError, match="clash with the experiment columns"):
        store.experiment_frame("flag", "revenue")


@pytest.mark.parametrize("window", [dt.timedelta(minutes=5), 300, 300.0])
def test_attribution_window_includes_its_start_and_excludes_its_end(store, window):
    store.append(
        assignments=[assignment("u1", "x", 3)],
        outcomes=[outcome("u1", 1.0, 3), outcome("u1", 2.0, 7.99), outcome("u1", 4.0, 8), outcome("u1", 8.0, 2.99)],
    )
    assert store.experiment_frame("flag", "revenue", window=window)["y"].tolist() == [3.0]
    assert store.experiment_frame("flag", "revenue")["y"].tolist() == [7.0]
    store.append_bandit_events([bandit("u1", "p", 3)])
    assert store.bandit_rewards("revenue", window=window)["reward"].tolist() == [3.0]
