"""The self-contained HTML report (PNG plots embedded as data URIs) and its side files."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from pathlib import Path
from typing import Any

from sortition.report import plots  # first: it selects the Agg backend

import matplotlib.pyplot as plt  # noqa: E402  (isort: skip)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
.note{color:#666;font-size:.85em}code{background:#f5f5f5;padding:0 .2em}
.srm{padding:.6em 1em;border-radius:4px;margin:1em 0}.srm.bad{background:#fde8e8;border:1px solid #c0392b}
.srm.good{background:#eef7ee;border:1px solid #8bc34a;font-size:.85em}
"""


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f'<td class="num">{v:,.4g}</td>'
        if isinstance(v, int):
            return f'<td class="num">{v:,}</td>'
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def summary(experiment: Any, simulation: Any = None) -> dict[str, Any]:
    """The figures the CLI prints and the report shows, as plain data."""
    result = experiment.results_[-1]
    out: dict[str, Any] = {
        "rounds": len(experiment.results_),
        "visitors": result.n_total,
        "arms": list(experiment.arms),
        "active_arms": list(experiment.active_arms_),
        "dropped": [a for a in experiment.arms if a not in experiment.active_arms_],
        "segments": [
            {
                "id": s.id,
                "rule": s.description,
                "share": s.share,
                "best_arm": s.best_arm,
                "p_best": s.arm_best_probabilities.get(s.best_arm, 0.0),
                "next_allocation": s.arm_probabilities,
            }
            for s in result.segments
        ],
        "graduations": [vars(g) for g in result.graduations],
        "lifts": [vars(lift) for lift in result.lifts],
    }
    if simulation is not None:
        out["regret"] = {
            "loop": simulation.regret,
            "uniform_ab": simulation.uniform_regret,
            "saved_vs_uniform": simulation.uniform_regret - simulation.regret,
            "per_visitor_loop": simulation.regret / max(1, out["visitors"]),
            "per_visitor_uniform": simulation.uniform_regret / max(1, out["visitors"]),
        }
        out["segment_accuracy"] = simulation.segment_accuracy
        out["policy_values"] = simulation.policy_values
        out["truth"] = [
            {"rule": c.description, "best_arm": c.best_arm, "true_best_arm": c.true_best_arm, "correct": c.correct}
            for c in simulation.segments
        ]
    return out


def write_report(
    out_dir: str | Path,
    experiment: Any,
    simulation: Any = None,
    *,
    title: str = "Sortition adaptive experiment",
    source: str | None = None,
    srm: Any = None,
) -> Path:
    """Write ``index.html`` (plots embedded), ``configuration.json`` (the next round's flag
    configuration), ``summary.json`` and ``rounds.csv`` into ``out_dir``; return the HTML path.

    Args:
        out_dir: output folder (created when missing).
        experiment: a :class:`SequentialExperiment` with at least one completed round.
        simulation: a :class:`SimulationResult` for simulated runs (adds regret and truth checks).
        title: the page title.
        source: where the data came from (shown on the page).
        srm: the round's :class:`~sortition.experiment.srm.SRMResult` (a banner at the top of the page).
    """
    if not experiment.results_:
        raise ValueError("the experiment has no completed round to report; call advance() first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = experiment.results_[-1]
    facts = summary(experiment, simulation)
    arms = experiment.arms

    sections = []
    if srm is not None:
        facts["srm"] = srm.to_dict()
        sections.append(_srm_banner(srm))
    intro = (
        f"<p>{facts['rounds']} round(s), {facts['visitors']:,} visitors, arms {', '.join(arms)} "
        f"(control: {arms[0]}); outcome: {experiment.outcome}; engine: {experiment.engine}. "
        f"Cells: control {experiment.weights.control:.0%}, explore {experiment.weights.explore:.0%}, "
        f"optimized {experiment.weights.optimized:.0%} of every segment.</p>"
    )
    if source:
        intro += f'<p class="note">Data: {html.escape(source)}</p>'
    sections.append(intro)

    if simulation is not None:
        r = facts["regret"]
        pv = facts["policy_values"]
        sections.append(
            "<h2>Regret</h2>"
            + _table(
                ["policy", "cumulative regret vs oracle", "per visitor"],
                [
                    ["Sortition adaptive loop", r["loop"], r["per_visitor_loop"]],
                    ["uniform A/B test (same visitors)", r["uniform_ab"], r["per_visitor_uniform"]],
                ],
            )
            + f"<p>Saved vs uniform A/B: <b>{r['saved_vs_uniform']:,.4g}</b> outcome units. "
            f"Final segments whose chosen arm is the true best: <b>{facts['segment_accuracy']:.0%}</b> of traffic.</p>"
            + _table(
                ["value per visitor (truth, fresh visitors)", "value"],
                [[k, v] for k, v in pv.items()],
            )
            + f'<img src="{_png(plots.cumulative_regret(simulation))}" alt="cumulative regret">'
        )

    seg_rows = []
    for s in result.segments:
        lifts = "; ".join(f"{lift.arm} {lift.mean:+.3g} [{lift.lower:.3g}, {lift.upper:.3g}]" for lift in s.lifts)
        alloc = ", ".join(f"{a} {p:.1%}" for a, p in s.arm_probabilities.items())
        seg_rows.append([s.id, s.description, f"{s.share:.1%}", s.best_arm,
                         f"{s.arm_best_probabilities.get(s.best_arm, 0):.2f}", lifts, alloc])
    sections.append(
        "<h2>Segments</h2>"
        + _table(["id", "rule", "share", "best arm", "P(best)", "lift vs control (90% CI)", "next allocation"],
                 seg_rows)
        + f'<img src="{_png(plots.policy_tree(result, arms))}" alt="policy tree">'
    )
    sections.append(
        "<h2>Posterior lift</h2>" + f'<img src="{_png(plots.lift_intervals(result, experiment.level))}" alt="lifts">'
    )
    # one analysed round of someone's data: the round-0 plan was never served, so no history to show
    if len(experiment.results_) > 1 or simulation is not None:
        sections.append(
            "<h2>Allocation over rounds</h2>"
            + f'<img src="{_png(plots.allocation_over_rounds(experiment))}" alt="allocation over rounds">'
        )

    decisions = []
    for g in result.graduations:
        decisions.append(["graduation proposed", g.segment, g.arm,
                          f"P(lift>0)={g.prob_positive:.3f}, expected loss={g.expected_loss:.3g}, {g.rounds} rounds"])
    for arm in facts["dropped"]:
        decisions.append(["arm dropped", "everywhere", arm, f"P(best) < {experiment.drop_below} in every segment "
                          f"for {experiment.drop_after} rounds"])
    if not decisions:
        decisions.append(["continue", "all segments", "-", "no winner is confident and cheap enough to ship yet"])
    recs = result.recommendations
    rec_html = ""
    if recs is not None and len(recs):
        names = {s.id: s.description for s in result.segments}
        rec_rows = [
            [names.get(r.scope, str(r.scope)), r.arm, f"{r.share:.0%}",
             f"{r.lift_mean:+.3g} [{r.lift_lower:.3g}, {r.lift_upper:.3g}]", f"{r.prob_positive:.2f}",
             float(r.loss_if_ship), r.decision]
            for r in recs.itertuples()
        ]
        rec_html = "<h3>This round's recommendations</h3>" + _table(
            ["scope", "treatment", "share", "lift (90% CI)", "P(lift>0)", "expected loss if shipped", "decision"],
            rec_rows,
        )
    sections.append(
        "<h2>Decisions</h2>" + _table(["decision", "segment", "arm", "why"], decisions) + rec_html
        + '<p class="note">Graduations are proposals (sustained over rounds): the loop never ships an arm by '
        "itself.</p>"
    )

    round_rows = []
    for res in experiment.results_:
        cells = "; ".join(
            f"{c.cell}: n={c.n}, lift {c.model_lift:+.3g} [{c.model_lower:.3g}, {c.model_upper:.3g}]" for c in res.cells
        )
        round_rows.append([res.round, res.n_round, res.n_total, len(res.segments), ", ".join(res.dropped) or "-",
                           cells])
    sections.append(
        "<h2>Rounds</h2>" + _table(["round", "visitors", "total", "segments", "dropped", "cells (model lift vs control)"],
                                   round_rows)
        + '<p class="note">The next round\'s plan is in <code>configuration.json</code> (a UFC flag configuration '
        "that Sortition's Client and Eppo's SDKs serve identically).</p>"
    )

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="note">Generated {stamp} by Sortition.</p>' + "".join(sections) + "</body></html>"
    )
    path = out / "index.html"
    _atomic_write(path, page)
    _atomic_write(out / "configuration.json", json.dumps(experiment.configuration(), indent=2))
    _atomic_write(out / "summary.json", json.dumps(facts, indent=2, default=_json_default))
    csv = "round,visitors,total,segments,dropped\n" + "".join(
        f"{r.round},{r.n_round},{r.n_total},{len(r.segments)},{'|'.join(r.dropped)}\n" for r in experiment.results_
    )
    _atomic_write(out / "rounds.csv", csv)
    return path


def _srm_banner(srm: Any) -> str:
    if srm.ok:
        return f'<div class="srm good">{html.escape(srm.describe())}.</div>'
    return (f'<div class="srm bad"><b>Sample-ratio mismatch.</b> {html.escape(srm.describe())}. '
            "Do not act on this report until the cause is found.</div>")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
