"""The report: escaping, readable rules and numbers, one decision everywhere, the tree at 8 leaves,
the round archive and the machine-readable outputs."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke

from sortition.display import interval, number, percent, signed
from sortition.experiment import SequentialExperiment
from sortition.experiment.results import RoundResult, SegmentResult
from sortition.report import round_table, summary
from sortition.report.facts import ROUND_TABLE_COLUMNS
from sortition.report.plots import policy_tree
from sortition.report.rules import readable
from sortition.rules import AnyOf, Condition, Rule
from sortition.scenarios import make_scenario
from sortition.store import EventStore
from sortition.workflows.demo import analyze

from experiment.test_persistence import FLAG, METRIC, _serve

EVIL = "<img src=x onerror=alert(1)>"
FIT = {"progress": False, "draws": 100}


def _hostile_frame(n=900, seed=0):
    rng = np.random.default_rng(seed)
    device = rng.choice(["mobile", "desktop", EVIL], n)
    arm = rng.choice(["control", EVIL], n)
    y = rng.normal(10 + 2 * ((arm == EVIL) & (device == "mobile")), 1.0)
    return pd.DataFrame({"arm": arm, "y": y, EVIL: device, "visits": rng.integers(0, 30, n)})


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile")
    experiment, report = analyze(
        _hostile_frame(),
        control="control",
        outcome_kind="continuous",
        engine="stratified",
        draws=100,
        out=out,
        source=f"file {EVIL}.csv",
        key=EVIL,
    )
    return experiment, report, out


def test_every_value_from_the_data_is_escaped(hostile):
    experiment, report, out = hostile
    page = report.read_text()
    assert EVIL not in page and "onerror=alert(1)>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown as text: arm, covariate, source
    assert page.count("<img ") == len(re.findall(r'<img src="data:image/png;base64,', page))
    # the machine-readable files keep the names as they are
    table = pd.read_parquet(out / "rounds.parquet")
    assert EVIL in set(table["arm"])


def test_numbers_are_formatted_for_people(hostile):
    assert [number(24720.3), number(9870), number(0.01234), number(-3.5), number(float("nan"))] == [
        "24,720",
        "9,870",
        "0.0123",
        "-3.5",
        "-",
    ]
    assert (signed(1.234), signed(-0.5), percent(0.123), percent(0.05, 1, sign=True)) == (
        "+1.23",
        "-0.5",
        "12%",
        "+5.0%",
    )
    page = hostile[1].read_text()
    text = re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", page))
    assert not re.search(r"\d\.\d+e[+-]\d", text)  # no 2.472e+04 beside 9,870


def test_readable_rules_keep_the_exact_rule_at_hand(hostile):
    rule = Rule(
        (
            Condition("device", "NOT_ONE_OF", ["tablet", "desktop"]),
            Condition("visits", "GTE", 3),
            Condition("visits", "LT", 8),
        )
    )
    assert (
        readable(rule, {"device": ("desktop", "mobile", "tablet")}) == "device = mobile and 3 <= visits < 8"
    )
    assert readable(rule) == "device not in {tablet, desktop} and 3 <= visits < 8"  # no levels known: as is
    experiment, report, _ = hostile
    page = report.read_text()
    for seg in experiment.results_[
        -1
    ].segments:  # the exact rule is on the page, escaped, beside the readable one
        exact = (
            seg.description.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&quot;")
        )
        assert f'title="{exact}"' in page


def test_one_decision_per_scope_agrees_everywhere(hostile, tmp_path):
    experiment, report, out = hostile
    result = experiment.results_[-1]
    decisions = result.decisions
    assert [d.scope for d in decisions] == ["overall", *[s.id for s in result.segments]]
    assert all(d.decision in ("SHIP", "CONTINUE", "STOP") for d in decisions)
    doc = json.loads((out / "summary.json").read_text())
    assert [d["label"] for d in doc["decisions"]] == [d.label for d in decisions]
    assert [s["decision"] for s in doc["segments"]] == [d.label for d in decisions[1:]]
    table = recommend_table = result.recommendations
    assert recommend_table["scope"].is_unique and list(table["decision"]) == [d.decision for d in decisions]
    # SHIP only where graduated (none after one analysed round)
    assert not result.graduations and "SHIP" not in [d.decision for d in decisions]
    page = report.read_text()
    for d in decisions:
        assert f">{d.label}</span>" in page


def test_tree_stays_readable_with_eight_leaves():
    arms = ("control", "a", "b")
    segments = []
    for i in range(8):
        rule = Rule((Condition("country", "ONE_OF", [f"country-{i}"]), Condition("visits", "GT", i)))
        segments.append(
            SegmentResult(
                i,
                rule.describe(),
                rule,
                0.125,
                arms[i % 3],
                {a: 1 / 3 for a in arms},
                (),
                {},
                {},
                {"control": 0.1, "a": 0.45, "b": 0.45},
            )
        )
    result = RoundResult(0, 100, 100, (), {}, tuple(segments), (), arms, (), (), plan=None)
    fig = policy_tree(result, arms)
    width, height = fig.get_size_inches()
    assert width <= 11.5 and height >= 0.8 * 8  # the page shows it at about its own size: text stays 8 pt
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.axes[0].texts if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= 8
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text().startswith("segment")]
    assert len(boxes) == 8
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_tree_title_never_covers_a_long_first_edge_label():
    arms = ("control", "a", "b")
    cut = [Condition("country", "ONE_OF", ["US", "IN", "FR"]),
           Condition("device", "ONE_OF", ["desktop", "tablet"])]
    long_rule = AnyOf((Rule(tuple(cut)), Rule((Condition("country", "NOT_ONE_OF", ["US", "IN", "FR"]),
                                                Condition("device", "ONE_OF", ["desktop"])))))
    rules = [long_rule, Rule((Condition("device", "ONE_OF", ["mobile"]),))]
    segments = tuple(SegmentResult(i, r.describe(), r, 0.5, arms[i + 1], {a: 1 / 3 for a in arms}, (), {}, {},
                                   {"control": 0.1, "a": 0.45, "b": 0.45}) for i, r in enumerate(rules))
    fig = policy_tree(RoundResult(0, 100, 100, (), {}, segments, (), arms, (), (), plan=None), arms)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig.axes[0].title.get_window_extent(renderer)
    labels = [t for t in fig.axes[0].texts if "\n" in t.get_text()]  # the wrapped edge labels
    assert labels and not any(t.get_window_extent(renderer).overlaps(title) for t in labels)


@pytest.fixture
def served_store(tmp_path):
    scenario = make_scenario("multi_winner", 3)
    store = tmp_path / "data" / "events.duckdb"
    store.parent.mkdir()
    EventStore(str(store)).close()
    return scenario, store


def _round(store, out, *extra):
    return invoke(["round", str(store), "--flag", FLAG, "--metric", METRIC, "--out", str(out), *extra])


def test_the_report_names_what_reproduces_its_fit(tmp_path):
    # the seed alone does not: another thread count gives other draws
    frame = _hostile_frame(300, seed=2).rename(columns={EVIL: "device"}).replace({EVIL: "tablet"})
    _, report = analyze(frame, control="control", outcome_kind="continuous", engine="bcf", threads=1,
                        draws=20, seed=7, out=tmp_path)
    assert "engine: bcf (20 draws, 1 thread, cold start: no previous fit, seed 7)." in report.read_text()
    fit = json.loads((tmp_path / "summary.json").read_text())["fit"]
    assert fit == {"seed": 7, "fit_seed": fit["fit_seed"], "engine": "bcf", "draws": 20, "num_threads": 1,
                   "warm_start": "cold (no previous fit)"}
    assert isinstance(fit["fit_seed"], int) and fit["fit_seed"] != 7  # derived from (seed, round)


def test_an_interval_shares_one_number_of_decimals():
    # decimals from the largest of the three: bounds near zero do not get more digits than the estimate
    assert interval(1.234, -0.1419, 2.53) == "+1.23 [-0.14, 2.53]"
    assert interval(1.2, 0.3, 2.1) == "+1.20 [0.30, 2.10]"
    assert interval(24720.3, -1234.4, 50100.2) == "+24,720 [-1,234, 50,100]"
    assert interval(-0.0004, -0.3, 0.3) == "0.000 [-0.300, 0.300]"  # rounds to zero: no sign, never -0.000
    assert interval(-0.004, -0.3, -0.0001) == "-0.004 [-0.300, 0.000]"
    # no shared scale: each number as number() writes it
    assert interval(1e-6, 1e-7, 2e-6) == "+1.00e-06 [1.00e-07, 2.00e-06]"
    assert interval(float("nan"), 1.0, 2.5) == "- [1, 2.5]"


def test_round_keeps_an_archive_with_the_same_round_numbers_everywhere(served_store, tmp_path):
    scenario, store = served_store
    out = tmp_path / "out"
    rng = np.random.default_rng(2)
    res = _round(
        store, out, "--arms", ",".join(scenario.arms), "--kind", "continuous", "--engine", "stratified"
    )
    assert res.exit_code == 0, res.text
    state = store.parent / f"{FLAG}.state.json"  # the default state file: beside the store, not in OUT
    assert state.exists() and not list(out.glob("*.state.json"))
    for day in range(2):
        _serve(store, scenario, 400, day, rng)
        res = _round(store, out)
        assert res.exit_code == 0, res.text
        assert f"Round {day + 1}: read 400" in res.text and f"Segments after round {day + 1}" in res.text
    assert "(round 3)" in res.text  # the next round to serve
    first, second = out / "round-0001" / "index.html", out / "round-0002" / "index.html"
    assert first.exists() and second.exists()
    assert "Sortition: checkout, round 2" in second.read_text() and "round 1" in first.read_text()
    index = (out / "index.html").read_text()
    assert 'href="round-0001/index.html"' in index and 'href="round-0002/index.html"' in index
    doc = json.loads((out / "summary.json").read_text())  # the latest round's files at a stable path
    assert doc["round"] == 2 and doc["next_round"] == 3
    # the console prints the same decisions as summary.json: overall, then each segment's label in the table
    overall, *segments = doc["decisions"]
    assert f"Decisions: overall {overall['label']}" in res.text
    assert all(d["label"] in res.text for d in segments)
    csv = pd.read_csv(out / "rounds.csv")
    assert sorted(set(csv["round"])) == [1, 2]
    experiment = SequentialExperiment.load(state)
    assert [r.number for r in experiment.results_] == [1, 2]
    # decisions survive the state file, so the table keeps every round's decision
    first_round = json.loads((out / "round-0001" / "summary.json").read_text())["decisions"]
    assert [d.label for d in experiment.results_[0].decisions] == [d["label"] for d in first_round]
    assert csv["decision"].notna().all()

    # --json: one document, the same numbers
    _serve(store, scenario, 300, 2, rng)
    res = _round(store, out, "--json")
    assert res.exit_code == 0, res.text
    doc = json.loads(res.output)
    assert (doc["round"], doc["next_round"], doc["new_exposures"]) == (3, 4, 300)
    assert doc["report"].endswith("round-0003/index.html") and doc["summary"]["round"] == 3
    assert [d["label"] for d in doc["summary"]["decisions"]] == [
        d["label"] for d in json.loads((out / "round-0003" / "summary.json").read_text())["decisions"]
    ]


def test_a_flag_key_cannot_write_outside_its_folders(served_store, tmp_path, monkeypatch):
    scenario, store = served_store
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "deep" / "er" / "out"
    res = invoke(
        [
            "round",
            str(store),
            "--flag",
            "../../x",
            "--metric",
            METRIC,
            "--out",
            str(out),
            "--arms",
            ",".join(scenario.arms),
            "--kind",
            "continuous",
            "--engine",
            "stratified",
        ]
    )
    assert res.exit_code == 0, res.text
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["data/_.._x.state.json", "data/events.duckdb"]  # the key's "/" never reaches a path


def test_round_table_and_analyze_json(hostile, tmp_path):
    experiment, _, out = hostile
    table = round_table(experiment)
    assert tuple(table.columns) == ROUND_TABLE_COLUMNS
    result = experiment.results_[-1]
    assert len(table) == len(result.segments) * len(experiment.arms)
    assert set(table["round"]) == {1}
    sums = table.groupby("segment")["n_round"].sum()
    assert int(sums.sum()) == result.n_total  # the segments partition the round's rows
    on_csv = pd.read_csv(out / "rounds.csv")
    assert len(on_csv) == len(table) and list(on_csv.columns) == list(table.columns)
    path = tmp_path / "data.csv"
    _hostile_frame(300, seed=1).to_csv(path, index=False)
    res = invoke(
        [
            "analyze",
            str(path),
            "--control",
            "control",
            "--kind",
            "continuous",
            "--engine",
            "stratified",
            "--out",
            str(tmp_path / "a"),
            "--json",
        ]
    )
    assert res.exit_code == 0, res.text
    doc = json.loads(res.output)
    assert doc["visitors"] == 300 and doc["round"] == 1 and doc["report"].endswith("index.html")
    assert doc == {
        **json.loads((tmp_path / "a" / "summary.json").read_text()),
        "report": doc["report"],
        "configuration": doc["configuration"],
    }
    assert summary(experiment)["decisions"][0]["scope"] == "overall"


def test_an_or_segment_reads_as_its_conjunctions():
    from sortition.rules import AnyOf, Condition, Rule
    from sortition.report.rules import set_columns

    rule = AnyOf((Rule((Condition("visits", "LTE", 3), Condition("device", "ONE_OF", ["mobile"]))),
                  Rule((Condition("visits", "IS_NULL", True),))))
    text = readable(rule, {"device": ("desktop", "mobile")})
    assert text.startswith("(") and " or " in text and "device = mobile" in text and "visits" in text
    assert set_columns([rule, None]) == ["device"]


def test_a_number_cut_both_ways_reads_as_known():
    from sortition.rules import AnyOf, Condition, Rule

    desktop = Condition("device", "ONE_OF", ["desktop"])
    cut = [Rule((desktop, Condition("recency", "LTE", 23.3))),
           Rule((desktop, Condition("recency", "GT", 23.3)))]
    # the exact rule keeps both cuts (a recency that is no number meets neither); the readable one does not
    assert isinstance(AnyOf.of(cut), AnyOf)
    assert readable(AnyOf(tuple(cut))) == "device = desktop and recency IS NOT NULL"
    missing = Rule((desktop, Condition("recency", "IS_NULL", True)))
    assert readable(AnyOf((*cut, missing))) == "device = desktop"
    gap = [Rule((desktop, Condition("recency", "LTE", 3))), Rule((desktop, Condition("recency", "GT", 5)))]
    assert readable(AnyOf(tuple(gap))) == (
        "(device = desktop and recency <= 3) or (device = desktop and recency > 5)")
