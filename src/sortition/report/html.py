"""The self-contained HTML report (PNG plots embedded as data URIs) and its side files.

Every value that can come from the data (arm, segment, covariate names, rules, the source) goes
through :mod:`sortition.display`, which escapes it; numbers are formatted there too.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sortition.report import plots  # first: it selects the Agg backend

import matplotlib.pyplot as plt  # noqa: E402  (isort: skip)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sortition import display  # noqa: E402
from sortition.display import Html, escape, number, percent, probability, signed, table, titled  # noqa: E402
from sortition.experiment.results import RoundResult  # noqa: E402
from sortition.experiment.sequential import SequentialExperiment  # noqa: E402
from sortition.experiment.simulation import SimulationResult  # noqa: E402
from sortition.experiment.srm import SRMResult  # noqa: E402
from sortition.posterior import Posterior  # noqa: E402
from sortition.report import facts  # noqa: E402
from sortition.report.rules import levels, set_columns  # noqa: E402

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:1.5em auto;
color:#222;padding:0 1.2em;line-height:1.45}
h1{font-size:1.55em;margin-bottom:.2em}h3{font-size:1em;margin-top:1.4em}
h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td .num{white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}img{max-width:100%;display:block;margin:.6em 0}
.note{color:#555;font-size:.88em}code{background:#f5f5f5;padding:0 .2em}
.checks:empty{display:none}.banner{padding:.6em 1em;border-radius:4px;margin:.6em 0;border:1px solid}
.banner.bad{background:#fdecea;border-color:#e0a39c}.banner.ok{background:#edf7ed;border-color:#a8d5a8}
.ship{font-weight:600;color:#1b6e1b}.stop{font-weight:600;color:#9b1c1c}.continue{color:#555}
.ship,.stop,.continue{white-space:nowrap}
span[title]{text-decoration:underline dotted #999;cursor:help}
.key{display:flex;gap:2em;flex-wrap:wrap;margin:.8em 0}.key b{display:block;font-size:1.25em}
.key div{background:#f5f7fa;padding:.5em .9em;border-radius:4px}
"""


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(fig: plt.Figure, alt: str) -> str:
    return f'<img src="{_png(fig)}" alt="{escape(alt)}">'


def _decision_cell(label: str) -> Html:
    word = label.split(" ", 1)[0].lower()
    return Html(f'<span class="{escape(word)}">{escape(label)}</span>')


def _alloc(probabilities: dict[str, float]) -> str:
    return ", ".join(f"{a} {percent(p)}" for a, p in probabilities.items() if p > 0)


def _lift(experiment: SequentialExperiment, mean: float, lower: float, upper: float) -> str:
    """A lift and its interval in the outcome's units: percentage points for conversions."""
    if experiment.outcome == "binary":
        return f"{mean * 100:+.1f} [{lower * 100:.1f}, {upper * 100:.1f}] pts"
    return display.interval(mean, lower, upper)


def _nowrap(text: str) -> Html:
    """An interval kept on one line."""
    return Html(f'<span class="num">{escape(text)}</span>')


def _level(experiment: SequentialExperiment, value: float) -> str:
    """A level (baseline, loss) in the outcome's units: percent for conversions."""
    return percent(value, 2) if experiment.outcome == "binary" else number(value)


def _checks(srm: SRMResult | None) -> str:
    """Banners shown first on the page: the sample-ratio-mismatch check of the rows read."""
    if srm is None:
        return ""
    if srm.ok:
        return f'<div class="banner ok">{escape(srm.describe())}.</div>'
    return (
        f'<div class="banner bad"><b>Sample-ratio mismatch.</b> {escape(srm.describe())}. '
        "Do not act on this report until the cause is found.</div>"
    )


def _calibration_text(posterior: Posterior | None, result: RoundResult) -> str | None:
    """Whether the round's intervals were calibrated (``fit(..., calibration=PATH)``) and its allocation's
    P(best arm) with them; None when the posterior is not at hand (a reloaded experiment before its next
    round)."""
    if posterior is None:
        return None
    if posterior.calibration is None:
        return "not calibrated (nominal levels)"
    allocation = "; allocation P(best) calibrated too" if result.calibrated_allocation else ""
    return f"calibrated on {number(posterior.calibration.n_experiments)} simulated experiments{allocation}"


def _intro(experiment: SequentialExperiment, result: RoundResult, source: str | None) -> str:
    arms = experiment.arms
    dropped = [a for a in arms if a not in experiment.active_arms_]
    churn = facts.churn(result)
    key = [
        ("round", f"{result.number} of {len(experiment.results_)}"),
        ("visitors", f"{number(result.n_total)} ({number(result.n_round)} this round)"),
        ("arms", f"{len(arms)} (control: {arms[0]})"),
        ("segments", str(len(result.segments))),
    ]
    if churn is not None:
        key.append(("churn since last round", percent(churn, 1) + facts.churn_cap_note(experiment, result)))
    change = facts.segment_change_text(experiment, result)
    if change:
        key.append(("segments since last round", change.removeprefix("Segments: ").rstrip(".")))
    calibration = _calibration_text(experiment.posterior_, result)
    if calibration is not None:
        key.append(("intervals", calibration))
    boxes = "".join(f"<div>{escape(k)}<b>{escape(v)}</b></div>" for k, v in key)
    # the seed and thread count reproduce the fit (another thread count gives other draws)
    fit = facts.fit_text(facts.fit_settings(experiment))
    fit = f" ({escape(fit)})" if fit else ""
    text = (
        f"<p>Arms {escape(', '.join(arms))}; outcome: {escape(experiment.outcome)}; engine: "
        f"{escape(experiment.engine)}{fit}. Every segment keeps a control cell "
        f"({percent(experiment.weights.control)}) "
        f"and an explore cell ({percent(experiment.weights.explore)}); the optimized cell "
        f"({percent(experiment.weights.optimized)}) follows the posterior."
        + (f" Dropped arms: {escape(', '.join(dropped))}." if dropped else "")
        + "</p>"
    )
    if source:
        text += f'<p class="note">Data: {escape(source)}</p>'
    return f'<div class="key">{boxes}</div>' + text


def _decisions(
    experiment: SequentialExperiment,
    result: RoundResult,
    texts: dict[Any, tuple[str, str]],
    baselines: dict[str, float],
) -> str:
    rows = []
    for d in result.decisions:
        text, exact = (
            ("everyone", "everyone") if d.scope == "overall" else texts.get(d.scope, (d.rule, d.rule))
        )
        scope = "all visitors" if d.scope == "overall" else f"segment {d.scope}: {text}"
        base = baselines.get(str(d.scope), math.nan)
        rel = d.lift_mean / base if base and not math.isnan(base) and base != 0 else math.nan
        rows.append(
            [
                titled(scope, exact),
                _decision_cell(d.label),
                d.arm,
                _nowrap(_lift(experiment, d.lift_mean, d.lift_lower, d.lift_upper)),
                percent(rel, 1, sign=True),
                _level(experiment, base),
                probability(d.prob_positive),
                _level(experiment, d.loss_if_ship),
                d.reason,
            ]
        )
    if not rows:
        return (
            '<h2>Decisions</h2><p class="note">No decisions for this round (a state file written before '
            "decisions were saved); the next round makes them.</p>"
        )
    grads = "".join(
        f"<li>graduate <b>{escape(g.arm)}</b> in "
        f"{escape(texts.get(_segment_id(result, g.segment), (g.segment,))[0])} "
        f"(P(lift &gt; 0) = {probability(g.prob_positive)}, confident {g.rounds} rounds in a row)</li>"
        for g in result.graduations
    )
    return (
        "<h2>Decisions</h2>"
        + table(
            [
                "scope",
                "decision",
                "treatment",
                f"lift vs control ({percent(experiment.level)} CI)",
                "relative lift",
                "control baseline",
                "P(lift > 0)",
                "expected loss if shipped",
                "why",
            ],
            rows,
        )
        + (f"<ul>{grads}</ul>" if grads else "")
        + f'<p class="note">One decision per scope. SHIP means the arm is a graduation: P(lift &gt; 0) &ge; '
        f"{probability(experiment.graduation_probability)} with a small expected loss for "
        f"{experiment.graduation_rounds} rounds in a row (overall: every segment graduated the same arm). "
        "It is a proposal: the loop never ships an arm by itself. STOP: no treatment is likely to beat "
        "control. Relative lift = lift / the control arm's observed mean in the scope. Hover a scope for its "
        "exact rule.</p>"
    )


def _segment_id(result: RoundResult, description: str) -> Any:
    return next((s.id for s in result.segments if s.description == description), None)


def _segments(
    experiment: SequentialExperiment,
    result: RoundResult,
    texts: dict[Any, tuple[str, str]],
    observed: dict[str, Sequence[str]],
) -> str:
    rows = []
    for s in result.segments:
        d = result.decision(s.id)
        rows.append(
            [
                s.id,
                titled(texts[s.id][0], texts[s.id][1]),
                percent(s.share, 1),
                s.best_arm,
                probability(s.arm_best_probabilities.get(s.best_arm, 0.0)),
                _decision_cell(d.label) if d is not None else "-",
                _alloc(s.arm_probabilities),
                Html(f"<code>{escape(texts[s.id][1])}</code>"),
            ]
        )
    return (
        "<h2>Segments</h2>"
        + table(
            ["id", "segment", "share", "best arm", "P(best)", "decision", "next allocation", "exact rule"],
            rows,
        )
        + _img(plots.policy_tree(result, experiment.arms, observed), "policy tree")
    )


def _arms(
    experiment: SequentialExperiment,
    result: RoundResult,
    texts: dict[Any, tuple[str, str]],
    data: pd.DataFrame,
) -> tuple[str, dict[str, float]]:
    """Per arm, overall and per segment: n, observed mean (conversion and order value for revenue),
    the model's lift vs control (absolute and relative) and, for revenue, its conversion/order-value split."""
    revenue = experiment.outcome == "revenue"
    binary = experiment.outcome == "binary"
    posterior = experiment.posterior_
    split = revenue and posterior is not None and {"conversion", "severity"} <= set(posterior.components)
    scopes = [("overall", "all visitors", "everyone", None, result.lifts)]
    scopes += [
        (str(s.id), f"segment {s.id}: {texts[s.id][0]}", texts[s.id][1], facts.segment_mask(s, data), s.lifts)
        for s in result.segments
    ]
    header = ["scope", "arm", "n", "conversion rate" if binary else "mean outcome"]
    if revenue:
        header += ["conversion rate", "order value"]
    header += [f"lift vs control ({percent(experiment.level)} CI)", "relative lift"]
    if split:
        header += ["model: conversion lift", "model: order-value lift"]
    split_means = _model_split(posterior, result) if split else None  # (scopes, 2, K-1)
    rows, baselines = [], {}
    for g, (key, name, exact, mask, lifts) in enumerate(scopes):
        stats = facts.arm_stats(experiment, key, mask, data)
        base = stats[0].mean if stats else math.nan
        baselines[key] = base
        by_arm = {str(lift.arm): lift for lift in lifts}
        for k, st in enumerate(stats):
            lift = by_arm.get(st.arm)
            row: list[Any] = [
                titled(name, exact) if k == 0 else "",
                st.arm,
                st.n,
                percent(st.mean, 1) if binary else number(st.mean),
            ]
            if revenue:
                row += [percent(st.conversion_rate, 1), number(st.order_value)]
            if lift is None:
                row += ["control (baseline)", "-"]
            else:
                rel = lift.mean / base if base and not math.isnan(base) else math.nan
                row += [
                    _nowrap(_lift(experiment, lift.mean, lift.lower, lift.upper)),
                    percent(rel, 1, sign=True),
                ]
            if split_means is not None:
                conversion, order_value = split_means[g, :, k - 1] if lift is not None else (None, None)
                row += ["-", "-"] if lift is None else [f"{conversion * 100:+.2f} pts", signed(order_value)]
            rows.append(row)
    note = (
        '<p class="note">Observed means are over every row read so far (raw, not reweighted by '
        "propensity); lifts are the model's. "
    )
    if split:
        note += (
            "The model splits revenue per visitor into the lift in conversion probability and the lift in "
            "order value among converters. "
        )
    return "<h2>Arms</h2>" + table(header, rows) + note + "</p>", baselines


def _model_split(posterior: Posterior, result: RoundResult) -> np.ndarray:
    """(1 + segments, 2, K-1): per scope (overall first), the posterior mean lift in conversion probability
    and in order value among converters; one pass over each component's draws for all scopes."""
    covariates = posterior.data.covariates
    masks = np.stack(
        [np.ones(posterior.n, dtype=bool), *[facts.segment_mask(s, covariates) for s in result.segments]]
    )
    return np.stack(
        [posterior.segments_mean_contrasts(masks, c).mean(axis=1) for c in ("conversion", "severity")], 1
    )


def _quality(experiment: SequentialExperiment, data: pd.DataFrame) -> str:
    q = facts.data_quality(experiment, data)
    if not q:
        return ""
    per_round = ", ".join(f"round {r}: {number(n)}" for r, n in q["rows_per_round"].items())
    dropped = q["covariates_dropped"]
    rows = [[c, percent(q["missing_rates"].get(c, 0.0), 1), "used"] for c in q["covariates"]]
    rows += [[c, percent(q["missing_rates"].get(c, 0.0), 1), f"dropped: {why}"] for c, why in dropped.items()]
    return (
        "<h2>Data quality</h2>"
        f"<p>Rows read: <b>{number(q['rows_read'])}</b> ({escape(per_round)}); rows dropped: "
        f"{number(q['rows_dropped'])} (rows with a missing arm or outcome are refused with an error, never "
        "dropped silently).</p>" + table(["covariate", "missing", "status"], rows)
    )


def _regret(facts_: dict[str, Any], simulation: SimulationResult) -> str:
    r = facts_["regret"]
    pv = facts_["policy_values"]
    return (
        "<h2>Regret (simulation: the truth is known)</h2>"
        + table(
            ["policy", "cumulative regret vs oracle", "per visitor"],
            [
                ["Sortition adaptive loop", r["loop"], r["per_visitor_loop"]],
                ["uniform A/B test (same visitors)", r["uniform_ab"], r["per_visitor_uniform"]],
            ],
        )
        + f"<p>Saved vs uniform A/B: <b>{number(r['saved_vs_uniform'])}</b> outcome units. "
        "Final segments whose "
        f"chosen arm is the true best: <b>{percent(facts_['segment_accuracy'])}</b> of traffic.</p>"
        + table(["value per visitor (truth, fresh visitors)", "value"], [[k, v] for k, v in pv.items()])
        + _img(plots.cumulative_regret(simulation), "cumulative regret")
    )


def _rounds(experiment: SequentialExperiment) -> str:
    rows = []
    for res in experiment.results_:
        cells = "; ".join(
            f"{c.cell}: n={number(c.n)}, lift {_lift(experiment, c.model_lift, c.model_lower, c.model_upper)}"
            for c in res.cells
        )
        churn = facts.churn(res)
        rows.append(
            [
                res.number,
                res.n_round,
                res.n_total,
                len(res.segments),
                ", ".join(res.dropped) or "-",
                "-" if churn is None else percent(churn, 1),
                cells,
            ]
        )
    return (
        "<h2>Rounds</h2>"
        + table(
            ["round", "visitors", "total", "segments", "dropped", "churn", "cells (model lift vs control)"],
            rows,
        )
        + '<p class="note">Churn: share of visitors whose segment or served arm changed since the last '
        "round. "
        "Files beside this page: <code>configuration.json</code> (the next round's plan, a UFC flag "
        "configuration "
        "that Sortition's Client and Eppo's SDKs serve identically), <code>summary.json</code>, "
        "<code>rounds.csv</code> / <code>rounds.parquet</code> (one row per round x segment x arm).</p>"
    )


def render(
    experiment: SequentialExperiment,
    simulation: SimulationResult | None = None,
    *,
    title: str = "Sortition adaptive experiment",
    source: str | None = None,
    links: Html | str = "",
    srm: SRMResult | None = None,
) -> str:
    """The report page as a string (see :func:`write_report`)."""
    if not experiment.results_:
        raise ValueError("the experiment has no completed round to report; call advance() first")
    result = experiment.results_[-1]
    summary = facts.summary(experiment, simulation)
    data = experiment.data_  # one copy of the rows for the whole page
    texts = facts.rule_texts(experiment, result, data)
    observed = levels(data, set_columns([s.rule for s in result.segments])) if data is not None else {}
    names = {s.id: texts[s.id][0] for s in result.segments}
    arms_html, baselines = _arms(experiment, result, texts, data)
    sections = [
        _intro(experiment, result, source),
        f'<div class="checks">{_checks(srm)}</div>',  # SRM and other checks: first thing read
        _decisions(experiment, result, texts, baselines),
        _segments(experiment, result, texts, observed),
        arms_html,
        "<h2>Posterior lift</h2>"
        + _img(
            plots.lift_intervals(
                result,
                experiment.level,
                names,
                "conversion probability, 0.01 = 1 pt" if experiment.outcome == "binary" else "outcome units",
            ),
            "lifts",
        ),
    ]
    # one analysed round of someone's data: the round-1 plan was never served, so no history to show
    if len(experiment.results_) > 1 or simulation is not None:
        sections.append(
            "<h2>Over rounds</h2>"
            + _img(plots.allocation_over_rounds(experiment, names), "allocation over rounds")
            + _img(plots.p_best_over_rounds(experiment, names), "P(best) over rounds")
        )
    if simulation is not None:
        sections.append(_regret(summary, simulation))
    sections += [_quality(experiment, data), _rounds(experiment)]
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
        f'<p class="note">Generated {stamp} by Sortition. {escape(links)}</p>'
        + "".join(sections)
        + "</body></html>"
    )


def write_report(
    out_dir: str | Path,
    experiment: SequentialExperiment,
    simulation: SimulationResult | None = None,
    *,
    title: str = "Sortition adaptive experiment",
    source: str | None = None,
    links: Html | str = "",
    srm: SRMResult | None = None,
) -> Path:
    """Write ``index.html`` (plots embedded), ``configuration.json`` (the next round's flag
    configuration), ``summary.json``, ``rounds.csv`` and ``rounds.parquet`` (one row per round x
    segment x arm, :func:`sortition.report.facts.round_table`) into ``out_dir``; return the HTML path.

    Args:
        out_dir: output folder (created when missing).
        experiment: a :class:`SequentialExperiment` with at least one completed round.
        simulation: a :class:`SimulationResult` for simulated runs (adds regret and truth checks).
        title: the page title.
        source: where the data came from (shown on the page).
        links: text under the title (the round archive's navigation); escaped unless it is
            :class:`sortition.display.Html`.
        srm: the round's :class:`~sortition.experiment.srm.SRMResult` (a banner at the top of the page,
            and ``srm`` in ``summary.json``).
    """
    page = render(experiment, simulation, title=title, source=source, links=links, srm=srm)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = facts.summary(experiment, simulation)
    if srm is not None:
        summary["srm"] = srm.to_dict()
    frame = facts.round_table(experiment)
    path = out / "index.html"
    _atomic_write(path, page)
    _atomic_write(out / "configuration.json", json.dumps(experiment.configuration(), indent=2))
    _atomic_write(out / "summary.json", json.dumps(facts.json_ready(summary), indent=2, allow_nan=False))
    _atomic_write(out / "rounds.csv", frame.to_csv(index=False))
    tmp = out / "rounds.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(out / "rounds.parquet")
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
