"""Bandit training in the store (SQL sufficient statistics) gives the in-memory path's coefficients."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from sortition.learning import train_bandit
from sortition.learning.events import BanditEvents
from sortition.learning.sufficient import model_from_statistics, store_statistics, train_bandit_from_store
from sortition.store import EventStore

T0 = dt.datetime(2024, 5, 1, 12, 0, 0)
ODD_KEY = 'it\'s a ?key% /~"q"'


def _messy_events(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Decisions with every kind of attribute value the evaluator distinguishes: numbers, bools and
    strings in the numeric group (only finite numbers count), numbers/bools/empty strings/None in the
    categorical group, absent keys, keys with quotes, '?', '%', '/' and '~', rare values."""
    rng = np.random.default_rng(seed)
    actions = ["a", "b", "c", "rare"]
    decisions, outcomes = [], []
    for i in range(n):
        action = actions[int(rng.choice(4, p=[0.4, 0.35, 0.24, 0.01]))]
        age = float(np.round(rng.normal(40, 10), 1))
        sn: dict = {"age": age} if rng.random() > 0.1 else {}
        if rng.random() < 0.3:
            sn["visits"] = int(rng.poisson(3))
        if rng.random() < 0.1:
            sn["visits"] = [None, True, "12"][i % 3]
        if rng.random() < 0.2:
            sn[ODD_KEY] = float(rng.normal(1e6, 1.0))
        country = ["US", "DE", "UK", "", None, 3, 3.0, True][
            int(rng.choice(8, p=[0.4, 0.2, 0.15, 0.05, 0.05, 0.05, 0.05, 0.05]))
        ]
        sc: dict = {"country": country} if rng.random() > 0.05 else {}
        if rng.random() < 0.5:
            sc[ODD_KEY] = ["x'y", "p?q", "r%s", "ünï"][i % 4]
        an = {"price": float(10 + 5 * actions.index(action))} if action != "c" or rng.random() < 0.5 else {}
        ac = {"color": ["red", "blue", "red", "green"][actions.index(action)]}
        p = float(rng.uniform(0.05, 1.0))
        reward = 0.3 * (action == "a") + 0.01 * (age - 40) * (action == "b") + rng.normal(0, 1)
        decisions.append(
            {
                "flagKey": "flag" if i % 13 else "other-flag",
                "banditKey": "banner",
                "subject": f"u{i}",
                "action": action,
                "actionProbability": p,
                "optimalityGap": 0.0,
                "modelVersion": "v1",
                "subjectNumericAttributes": sn,
                "subjectCategoricalAttributes": sc,
                "actionNumericAttributes": an,
                "actionCategoricalAttributes": ac,
                "timestamp": T0 + dt.timedelta(seconds=i),
                "metaData": {},
            }
        )
        if i % 5:
            outcomes.append(
                {
                    "subject": f"u{i}",
                    "metric": "revenue",
                    "value": float(reward),
                    "timestamp": T0 + dt.timedelta(seconds=i, milliseconds=500),
                }
            )
    return decisions, outcomes


@pytest.fixture
def messy_store(store):
    decisions, outcomes = _messy_events(1500, seed=3)
    store.append_bandit_events(decisions)
    store.append_outcomes(outcomes)
    return store


def _flat(model) -> dict:
    out = {}

    def walk(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}/{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        else:
            out[path] = value

    walk(model.model_data(), "")
    return out


def _assert_same(a, b, tol=1e-9):
    """Every coefficient equal to 1e-9, relative to its size where it exceeds 1 (an attribute with mean
    1e6 puts -slope * 1e6 into the intercept: its last digits are rounding, on either path)."""
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys(), sorted(set(fa) ^ set(fb))[:10]
    worst = max(abs(fa[k] - fb[k]) / max(1.0, abs(fa[k])) for k in fa if isinstance(fa[k], float))
    assert worst < tol, worst
    assert {k: v for k, v in fa.items() if not isinstance(v, float)} == {
        k: v for k, v in fb.items() if not isinstance(v, float)
    }
    assert a.n_events == b.n_events


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"l2": 0.05, "min_category_count": 40, "min_events_per_action": 30},
        {"importance_weighting": "none", "l2": 3.0},
        {"max_importance_weight": 2.0, "gamma": 4.0, "default_action_score": 0.25},
    ],
)
def test_sql_training_gives_the_in_memory_coefficients(messy_store, options):
    frame = messy_store.bandit_rewards("revenue", flag_key="flag")
    in_memory = train_bandit(BanditEvents.from_frame(frame), **options)
    in_store = train_bandit_from_store(messy_store, "revenue", flag_key="flag", **options)
    _assert_same(in_memory, in_store)
    assert set(in_store.coefficients) == (
        {"a", "b", "c"} if options.get("min_events_per_action") else {"a", "b", "c", "rare"}
    )
    # the odd key survives the round trip through SQL text, as a numeric and a categorical attribute
    terms = in_store.coefficients["a"]
    assert ODD_KEY in {t[0] for t in terms.subject_numeric}
    assert ODD_KEY in {t[0] for t in terms.subject_categorical}


def test_windows_and_until_select_the_same_rewards(messy_store):
    until = T0 + dt.timedelta(seconds=900)
    frame = messy_store.bandit_rewards("revenue", window=0.25, until=until)
    in_memory = train_bandit(BanditEvents.from_frame(frame), l2=0.5)
    in_store = train_bandit_from_store(messy_store, "revenue", window=0.25, until=until, l2=0.5)
    _assert_same(in_memory, in_store)
    assert in_store.n_events == 900


def test_training_reads_no_events_into_python(messy_store, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the SQL path must not load the events")

    monkeypatch.setattr(EventStore, "bandit_rewards", refuse)
    monkeypatch.setattr(EventStore, "bandit_events", refuse)
    stats = store_statistics(messy_store, "revenue")
    assert stats.n == 1500 and set(stats.events) == {"a", "b", "c", "rare"}
    p = stats.actions["a"].layout.n_columns
    assert stats.actions["a"].xtwx.shape == (p, p)
    model = model_from_statistics(stats, l2=1.0)
    assert model.n_events == 1500


def test_no_matching_decisions_is_a_clear_error(store):
    with pytest.raises(ValueError, match="no events"):
        train_bandit_from_store(store, "revenue")


def test_nan_and_infinity_read_as_the_in_memory_path_reads_them(tmp_path):
    """Python's json writes NaN/Infinity; DuckDB parses them, and they must count as missing
    numbers (NaN also as a missing category; Infinity is the category "Infinity")."""
    decisions, outcomes = _messy_events(300, seed=4)
    for i, d in enumerate(decisions[::3]):
        d["subjectNumericAttributes"]["age"] = [float("nan"), float("inf"), -float("inf")][i % 3]
        d["subjectCategoricalAttributes"]["country"] = [float("nan"), float("inf"), "US"][i % 3]
    with EventStore(str(tmp_path / "nan.duckdb")) as store:
        store.append_bandit_events(decisions)
        store.append_outcomes(outcomes)
        in_memory = train_bandit(BanditEvents.from_frame(store.bandit_rewards("revenue")))
        in_store = train_bandit_from_store(store, "revenue")
    _assert_same(in_memory, in_store)
    assert "Infinity" in dict(in_store.coefficients["a"].subject_categorical[0][1])
