"""Columnar scoring (Client.assign_table / bandit_table): row for row the single call's results."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sortition.serving import Client, Configuration
from sortition.serving import column_masks
from sortition.serving.column_masks import normalize_attribute
from sortition.serving.obfuscation import obfuscate_json

from ufc_cases import read

FLAGS = read("flags-v1.json")
PLAIN = Configuration.from_json(FLAGS)
OBFUSCATED = Configuration.from_json(obfuscate_json(FLAGS))
BANDITS = Configuration.from_json(read("bandit-flags-v1.json"), read("bandit-models-v1.json"))
FLAG_KEYS = sorted(json.loads(FLAGS)["flags"])
BANDIT_FLAGS = sorted(json.loads(read("bandit-flags-v1.json"))["flags"])


def _rule_attributes(flag: dict) -> list[str]:
    names = set()
    for alloc in flag["allocations"]:
        for rule in alloc.get("rules") or []:
            names.update(c["attribute"] for c in rule["conditions"])
    return sorted(names)


# Per flag, the attributes its rules read (always given a column: most rows then reach the shards).
FLAG_ATTRIBUTES = {k: [a for a in _rule_attributes(f) if a != "id"][:6] for k, f in json.loads(FLAGS)["flags"].items()}
EXTRA_ATTRIBUTES = ["age", "size", "version", "country", "email", "id", "number"]
BANDIT_ATTRIBUTES = ["account_age", "gender_identity", "area_code", "age", "country", "speed"]

STRINGS = st.sampled_from([
    "US", "Canada", "UK", "true", "false", "null", "1", "2", "123456789", "1.5.0", "2.2.13", "3.1.0", "1.2.3-beta",
    "free", "premium", "minimal", "full", "a@example.com", "b@test.com", "bob@mycompany.com", "", "zach", "é",
    "female", "male", "212", "10", "..",
])
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -0.0, 1.0, 1.5, 10.0, 20.0, 25.0, 50.0, 123456789.0]))
INTS = st.integers(-(2**40), 2**40) | st.sampled_from([0, 1, 2, 9, 10, 20, 25, 26, 50, 123456789])
SUBJECTS = st.text(alphabet="abzhc-é0123456789", min_size=0, max_size=8) | st.sampled_from(
    ["zach", "zachary", "alice", "x" * 60, "user-0000001"])


@st.composite
def column(draw, n: int, mixed: bool):
    kind = draw(st.sampled_from(["float", "int", "Int64", "bool", "str", "category"] + (["mixed"] if mixed else [])))
    if kind == "float":
        return pd.Series(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype="float64")
    if kind == "int":
        return pd.Series(draw(st.lists(INTS, min_size=n, max_size=n)), dtype="int64")
    if kind == "Int64":
        return pd.Series(draw(st.lists(st.none() | INTS, min_size=n, max_size=n)), dtype="Int64")
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if kind == "str":
        return pd.Series(draw(st.lists(st.none() | STRINGS, min_size=n, max_size=n)), dtype=object)
    if kind == "category":
        return pd.Series(draw(st.lists(st.none() | STRINGS, min_size=n, max_size=n)), dtype="category")
    values = st.none() | STRINGS | INTS | FLOATS | st.booleans()
    return pd.Series(draw(st.lists(values, min_size=n, max_size=n)), dtype=object)


@st.composite
def tables(draw, required: list[str], extra: list[str]):
    n = draw(st.integers(1, 25))
    arrow = draw(st.booleans())
    frame = pd.DataFrame({"subject": draw(st.lists(SUBJECTS, min_size=n, max_size=n))})
    names = required + [a for a in draw(st.lists(st.sampled_from(extra), unique=True, max_size=3)) if a not in required]
    for name in names:
        frame[name] = draw(column(n, mixed=not arrow))
    table = pa.Table.from_pandas(frame, preserve_index=False) if arrow else frame
    return frame, table


@contextmanager
def arrow_levels(threshold: int):
    saved = column_masks._ARROW_LEVELS
    column_masks._ARROW_LEVELS = threshold
    try:
        yield
    finally:
        column_masks._ARROW_LEVELS = saved


def rows_of(frame: pd.DataFrame) -> list[tuple[str, dict]]:
    """Each row as the single call's (subject key, attribute dict), missing values left out."""
    out = []
    for record in frame.to_dict("records"):
        key = record.pop("subject")
        attrs = {k: v for k, v in ((k, normalize_attribute(v)) for k, v in record.items()) if v is not None}
        out.append((key, attrs))
    return out


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("flag_key", FLAG_KEYS)
@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_assign_table_is_the_single_call_row_by_row(flag_key, data):
    cfg = {"plain": PLAIN, "obfuscated": OBFUSCATED}[data.draw(st.sampled_from(["plain", "obfuscated"]))]
    frame, table = data.draw(tables(FLAG_ATTRIBUTES[flag_key], EXTRA_ATTRIBUTES))
    client = Client(cfg)
    with arrow_levels(data.draw(st.sampled_from([0, 64]))):  # 0: Arrow's set and regex paths even for few levels
        out = client.assign_table(flag_key, table, default=None, chunk_size=data.draw(st.sampled_from([7, 4096])))
    assert out.num_rows == len(frame)
    variation_type = (cfg.get_flag(flag_key).variation_type if cfg.get_flag(flag_key) else None)
    for i, (key, attrs) in enumerate(rows_of(frame)):
        details = client.get_assignment_details(flag_key, key, attrs, None)
        got = out.column("variation")[i].as_py()
        if variation_type == "JSON" and got is not None:
            got = json.loads(got)
        assert same(got, details.value), (i, key, attrs)
        assert out.column("variation_key")[i].as_py() == (details.variation_key if details.code == "MATCH" else None)
        allocation = out.column("allocation")[i].as_py()
        assert allocation == (details.matched_allocation.key if details.code == "MATCH" else None)
        assert out.column("default_reason")[i].as_py() == (None if details.code == "MATCH" else details.code)


ACTION_NAMES = ["nike", "adidas", "reebok", "puma", "toyota", "é"]
ACTION_ATTRS = st.dictionaries(
    st.sampled_from(["brand_affinity", "loyalty_tier", "zip", "purchased_last_30_days", "speed"]),
    st.none() | st.sampled_from(["gold", "silver", "22203", "94111", "true"]) | st.floats(-5, 5) | st.booleans(),
    max_size=3)


@pytest.mark.parametrize("flag_key", BANDIT_FLAGS)
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bandit_table_is_the_single_call_row_by_row(flag_key, data):
    frame, table = data.draw(tables(BANDIT_ATTRIBUTES[:2], BANDIT_ATTRIBUTES[2:]))
    actions = data.draw(st.dictionaries(st.sampled_from(ACTION_NAMES), ACTION_ATTRS, max_size=5))
    client = Client(BANDITS)
    out = client.bandit_table(flag_key, table, actions, default="fallback", chunk_size=data.draw(st.sampled_from([5, 4096])))
    for i, (key, attrs) in enumerate(rows_of(frame)):
        result = client.get_bandit_action(flag_key, key, attrs, actions, "fallback")
        assert out.column("variation")[i].as_py() == result.variation, (i, key, attrs)
        assert out.column("action")[i].as_py() == result.action, (i, key, attrs, actions)
        e = result.evaluation
        if e is None:
            assert out.column("action_probability")[i].as_py() is None
            continue
        assert out.column("action_probability")[i].as_py() == e.action_weight
        assert out.column("action_score")[i].as_py() == e.action_score
        assert out.column("optimality_gap")[i].as_py() == e.optimality_gap


class TableLogger:
    def __init__(self):
        self.assignments, self.bandits = [], []

    def log_assignment(self, event):  # the per-event protocol: never called by the table calls
        raise AssertionError("table calls must not log one dict per subject")

    def log_bandit_action(self, event):
        raise AssertionError("table calls must not log one dict per subject")

    def log_assignments(self, table):
        self.assignments.append(table)

    def log_bandit_actions(self, table):
        self.bandits.append(table)


def _audience(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "subject": [f"user-{i}" for i in range(n)],
        "country": rng.choice(["US", "Canada", "France", "UK"], n),
        "email": rng.choice(["a@mycompany.com", "b@example.com"], n),
        "account_age": rng.uniform(0, 10, n),
        "gender_identity": rng.choice(["female", "male"], n),
    })


def test_events_go_to_a_table_logger_and_match_the_single_calls():
    frame = _audience(300)
    sink = TableLogger()
    client = Client(PLAIN, assignment_logger=sink)
    out = client.assign_table("new-user-onboarding", frame, default="default")
    (events,) = sink.assignments
    singles = []

    class Dicts:
        def log_assignment(self, event):
            singles.append(event)

    single = Client(PLAIN, assignment_logger=Dicts())
    for key, attrs in rows_of(frame):
        single.get_assignment("new-user-onboarding", key, attrs, "default")
    assert events.num_rows == len(singles) > 0
    got = events.select(["subject", "allocation", "variation", "experiment"]).to_pylist()
    assert got == [{k: e[k] for k in ("subject", "allocation", "variation", "experiment")} for e in singles]
    extra = [dict(x) for x in events.column("extraLogging").to_pylist()]
    assert extra == [{k: e[k] for k in ("allocationvalue_type", "owner") if k in e} for e in singles]
    assert events.column("subjectAttributes")[0].as_py()["country"] == frame.loc[
        frame.subject == events.column("subject")[0].as_py(), "country"].item()
    assert out.num_rows == 300


def test_bandit_events_as_arrow_tables():
    frame = _audience(200)
    actions = {"nike": {"brand_affinity": 1.0, "loyalty_tier": "gold"}, "adidas": {"brand_affinity": 0.5}}
    sink = TableLogger()
    client = Client(BANDITS, assignment_logger=sink, bandit_logger=sink)
    out, _, bandit_events = client.bandit_table("banner_bandit_flag", frame, actions, default="x", with_events=True)
    (logged,) = sink.bandits
    assert logged.equals(bandit_events)
    acted = out.filter(pa.compute.is_valid(out.column("action")))
    assert bandit_events.column("subject").to_pylist() == acted.column("subject").to_pylist()
    assert bandit_events.column("actionProbability").to_pylist() == acted.column("action_probability").to_pylist()
    first = bandit_events.slice(0, 1).to_pylist()[0]
    row = frame.set_index("subject").loc[first["subject"]]
    assert first["subjectNumericAttributes"] == {"account_age": row.account_age}
    assert first["subjectCategoricalAttributes"]["gender_identity"] == row.gender_identity
    assert json.loads(bandit_events.schema.metadata[b"sortitionOfferedActions"])["nike"]["numericAttributes"] == {
        "brand_affinity": 1.0}


def test_large_audience_takes_the_vectorized_paths_and_agrees():
    frame = _audience(5000)
    client = Client(BANDITS)
    actions = {"nike": {"brand_affinity": 1.2}, "adidas": {"brand_affinity": 0.8}, "puma": {}}
    out = client.bandit_table("banner_bandit_flag", pa.Table.from_pandas(frame), actions, default="x")
    picks = [client.get_bandit_action("banner_bandit_flag", k, a, actions, "x") for k, a in rows_of(frame)]
    assert out.column("action").to_pylist() == [p.action for p in picks]
    flags = Client(PLAIN).assign_table("new-user-onboarding", frame, default="d")
    assert flags.column("variation").to_pylist() == [
        Client(PLAIN).get_assignment("new-user-onboarding", k, a, "d") for k, a in rows_of(frame)]


def test_fallbacks_are_named():
    frame = pd.DataFrame({"subject": ["a", None, "c"], "country": ["US", "US", None]})
    client = Client(PLAIN)
    out = client.assign_table("new-user-onboarding", frame, default="d")
    assert out.column("default_reason").to_pylist()[1] == "SUBJECT_KEY_MISSING"
    assert out.column("variation").to_pylist()[1] == "d"
    missing = client.assign_table("no-such-flag", frame, default="d")
    assert set(missing.column("default_reason").to_pylist()) == {"FLAG_UNRECOGNIZED_OR_DISABLED", "SUBJECT_KEY_MISSING"}
    typed = client.assign_table("new-user-onboarding", frame, default=3)
    assert typed.column("default_reason").to_pylist()[0] == "TYPE_MISMATCH"
    assert typed.column("variation").to_pylist() == [3, 3, 3]


def test_bad_input_is_refused_clearly():
    client = Client(PLAIN)
    with pytest.raises(ValueError, match="subject column 'user' is not in the table.*did you mean 'users'"):
        client.assign_table("new-user-onboarding", pd.DataFrame({"users": ["a"]}), subject="user")
    with pytest.raises(TypeError, match="pandas DataFrame or a pyarrow Table"):
        client.assign_table("new-user-onboarding", [{"subject": "a"}])
    with pytest.raises(ValueError, match="must hold strings"):
        client.assign_table("new-user-onboarding", pd.DataFrame({"subject": [1.5]}))
    with pytest.raises(TypeError, match="not a string"):
        Client(BANDITS).bandit_table("banner_bandit_flag", pd.DataFrame({"subject": ["a"]}), "nike")


def test_polars_style_inputs_through_arrow():
    class ArrowOnly:  # what polars.DataFrame offers: to_arrow()
        def __init__(self, table):
            self.table = table

        def to_arrow(self):
            return self.table

    table = pa.table({"subject": ["a", "b"], "country": ["US", "France"]})
    client = Client(PLAIN)
    assert client.assign_table("new-user-onboarding", ArrowOnly(table), default="d").equals(
        client.assign_table("new-user-onboarding", table, default="d"))


PATTERNS = st.sampled_from([
    "^a", "a$", "e", "^$", "", "@example\\.com", ".*@test\\.com", "\\d+", "\\w\\b", "[a-c]+z", "(ab|cd)$",
    "^.$", "x{2,3}", "é", "(?i)ABC", "a\\1", "(?=a)", "[[:alpha:]]+", "\\s",
])
TEXTS = st.text(alphabet="abcdezx@.com1٣ \n\tAB", max_size=8)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(pattern=PATTERNS, values=st.lists(st.none() | TEXTS, min_size=1, max_size=12),
       negate=st.booleans())
def test_regex_masks_over_columns_are_the_predicate(pattern, values, negate):
    from sortition.serving.column_masks import column_from_values, condition_mask
    from sortition.serving.conditions import compile_condition

    operator = "NOT_MATCHES" if negate else "MATCHES"
    predicate = compile_condition(operator, pattern)
    with arrow_levels(0):  # Arrow's RE2 over the distinct strings
        mask = condition_mask(column_from_values(values), operator, pattern, predicate)
    assert mask.tolist() == [predicate(v) for v in values]
