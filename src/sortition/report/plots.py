"""Matplotlib figures of an adaptive experiment: each function returns a ``Figure`` (Agg backend, so
no display is needed); save it with ``fig.savefig(path)``. The HTML report embeds all of them.

- :func:`allocation_over_rounds` (experiment): per final segment, the traffic share of each arm by round;
- :func:`p_best_over_rounds` (experiment): per final segment, P(arm is best) by round;
- :func:`lift_intervals` (round result): lift vs control per segment, with credible intervals;
- :func:`policy_tree` (round result, arms): the segments as a tree, best arm and allocation per leaf;
- :func:`cumulative_regret` (simulation): the loop's regret beside a uniform A/B test's.

Rounds are numbered from 1, as everywhere in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sortition.report.rules import readable  # noqa: E402
from sortition.rules import AnyOf, Rule  # noqa: E402

plt.rcParams["text.parse_math"] = False  # names from the data are text: "$" never starts math

if TYPE_CHECKING:
    from sortition.experiment.results import RoundResult
    from sortition.experiment.sequential import SequentialExperiment
    from sortition.experiment.simulation import SimulationResult

ARM_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def arm_color(index: int) -> str:
    return ARM_COLORS[index % len(ARM_COLORS)]


def _final_members(experiment: SequentialExperiment) -> tuple[Any, np.ndarray]:
    """All rows so far, and the final plan's segment index of each (as the flag serves)."""
    data = experiment.data_
    return data, experiment.plan_.segment_index(data)


def _grid(n: int, sharey: bool = True) -> tuple[plt.Figure, Any, int, int]:
    ncols = min(3, max(1, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False, sharey=sharey)
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    return fig, axes, nrows, ncols


def _finish(fig: plt.Figure, axes: Any, ylabel: str, title: str, n_arms: int, nrows: int) -> plt.Figure:
    """A grid of per-segment panels: the y label, the title, one legend of the arms below."""
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(n_arms, 6),
        frameon=False,
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02 - 0.04 / nrows),
    )
    return fig


def p_best_over_rounds(experiment: SequentialExperiment, names: dict[Any, str] | None = None) -> plt.Figure:
    """Per final segment, P(arm is best) in each round: each round's segments' P(best), averaged over
    the final segment's visitors (segments are re-discovered every round)."""
    result = experiment.results_[-1]
    data, final_index = _final_members(experiment)
    arms = experiment.arms
    segments = result.segments
    fig, axes, nrows, ncols = _grid(len(segments))
    numbers = [r.number for r in experiment.results_]
    for i, seg in enumerate(segments):
        ax = axes[i // ncols][i % ncols]
        members = data[final_index == i]
        if len(members) == 0:
            members = data
        probs = np.zeros((len(numbers), len(arms)))
        for r, res in enumerate(experiment.results_):
            index = experiment.plans_[r + 1].segment_index(members)  # the plan built from round r's segments
            table = np.array(
                [[s.arm_best_probabilities.get(a, 0.0) for a in arms] for s in res.segments]
                + [[1.0 / len(arms)] * len(arms)]
            )  # the catch-all allocation
            probs[r] = table[np.minimum(index, len(res.segments))].mean(axis=0)
        for k, arm in enumerate(arms):
            ax.plot(numbers, probs[:, k], "o-", color=arm_color(k), label=arm, ms=4)
        ax.set_title(_wrap(f"{(names or {}).get(seg.id, seg.description)}  ({seg.share:.0%})"), fontsize=8)
        ax.set_xticks(numbers)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    return _finish(fig, axes, "P(best)", "P(arm is best) per segment over rounds", len(arms), nrows)


def allocation_over_rounds(
    experiment: SequentialExperiment, names: dict[Any, str] | None = None
) -> plt.Figure:
    """Per final segment, the arm probabilities its visitors were served in each round.

    Segments are re-discovered every round, so each round's plan is evaluated on the final
    segment's own visitors (first matching allocation, as the flag serves) and averaged.
    """
    result = experiment.results_[-1]
    data, final_index = _final_members(experiment)
    arms = experiment.arms
    plans = experiment.plans_
    segments = result.segments
    fig, axes, nrows, ncols = _grid(len(segments))
    rounds = np.arange(1, len(plans) + 1)  # plan r is served in round r + 1; the last is the next round's
    for i, seg in enumerate(segments):
        ax = axes[i // ncols][i % ncols]
        members = data[final_index == i]
        if len(members) == 0:
            members = data
        probs = np.array([plan.probabilities(members).mean(axis=0) for plan in plans])  # (R+1, K)
        bottom = np.zeros(len(plans))
        for k, arm in enumerate(arms):
            ax.bar(rounds, probs[:, k], bottom=bottom, color=arm_color(k), label=arm, width=0.8)
            bottom += probs[:, k]
        ax.set_title(_wrap(f"{(names or {}).get(seg.id, seg.description)}  ({seg.share:.0%})"), fontsize=8)
        ax.set_xticks(rounds)
        ax.set_xticklabels([str(r) for r in rounds[:-1]] + ["next"], fontsize=8)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylim(0, 1)
    title = "Allocation per segment over rounds (last bar: the next round's plan)"
    return _finish(fig, axes, "share of traffic", title, len(arms), nrows)


def lift_intervals(
    result: RoundResult, level: float = 0.9, names: dict[Any, str] | None = None, unit: str = "outcome units"
) -> plt.Figure:
    """Posterior lift vs control per segment and treatment: mean and credible interval (``names``:
    text per segment id, default its exact rule)."""
    segments = result.segments
    treatments = [lift.arm for lift in segments[0].lifts] if segments else []
    rows = len(segments) + 1
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * rows * max(1, len(treatments)) + 1.0))
    labels, y = [], 0.0
    ticks = []
    blocks = [
        ("all visitors", result.lifts),
        *[((names or {}).get(s.id, s.description), s.lifts) for s in segments],
    ]
    height = 0.8 / max(1, len(treatments))
    for name, lifts in blocks:
        for j, lift in enumerate(lifts):
            pos = y + j * height
            ax.errorbar(
                lift.mean,
                pos,
                xerr=[[lift.mean - lift.lower], [lift.upper - lift.mean]],
                fmt="o",
                color=arm_color(j + 1),
                capsize=3,
                label=lift.arm if name == "all visitors" else None,
            )
        ticks.append(y + height * (len(lifts) - 1) / 2)
        labels.append(_wrap(name, 38))
        y += 1.0
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"lift vs control ({unit}), {level:.0%} credible interval")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Posterior lift per segment", fontsize=10)
    fig.tight_layout()
    return fig


def policy_tree(
    result: RoundResult, arms: Sequence[str], observed: dict[str, Sequence[str]] | None = None
) -> plt.Figure:
    """The segments as a tree drawn left to right: edges carry the conditions, each leaf (one row per
    segment, so 8 leaves stay readable) its best arm, P(best) and next allocation.

    Args:
        result: a round's result (its segments are the leaves).
        arms: arm names, control first (leaf colour = best arm).
        observed: the data's levels of set-compared columns (:func:`sortition.report.rules.levels`),
            so edges read ``device = mobile`` rather than ``device NOT_ONE_OF {tablet, desktop}``.
    """
    leaves = [(_conditions(s.rule, observed), s) for s in result.segments]
    tree = _build(leaves, 0)
    n_leaves = max(1, _count_leaves(tree))
    depth = max(1, _depth(tree))
    positions: dict[int, tuple[float, float]] = {}
    _layout(tree, 0, [0.0], positions)
    # the first row's edge labels stand above it: room for their lines, so the title never covers them
    top_lines = max((_wrap(edge, 34).count("\n") + 1 for node in _walk(tree)
                     for edge, child in node["children"] if positions[id(child)][1] == 0), default=0)
    top = max(0.6, _LABEL_LIFT + _LABEL_LINE * top_lines + 0.1)
    fig, ax = plt.subplots(figsize=(11.0, 0.85 * (n_leaves - 0.4 + top) + 0.8))
    ax.axis("off")
    for node in _walk(tree):
        level, row = positions[id(node)]
        for edge, child in node["children"]:
            c_level, c_row = positions[id(child)]
            ax.plot(
                [level, level + 0.5, level + 0.5, c_level],
                [-row, -row, -c_row, -c_row],
                color="#999999",
                lw=1,
                zorder=1,
            )
            ax.text(level + 0.55, -c_row + _LABEL_LIFT, _wrap(edge, 34), fontsize=8, ha="left", va="bottom",
                    zorder=2)
        seg = node.get("segment")
        if seg is None:
            if node is tree:
                ax.text(
                    level,
                    -row,
                    "all visitors",
                    ha="center",
                    va="center",
                    fontsize=8,
                    bbox=dict(boxstyle="round", fc="#eeeeee", ec="#999999"),
                )
            else:
                ax.plot([level], [-row], "o", color="#999999", ms=3, zorder=3)
            continue
        k = list(arms).index(seg.best_arm) if seg.best_arm in arms else 0
        alloc = ", ".join(f"{a} {p:.0%}" for a, p in seg.arm_probabilities.items() if p > 0)
        text = (
            f"segment {seg.id} · {seg.share:.0%} of traffic · best {seg.best_arm} "
            f"(P(best) {seg.arm_best_probabilities.get(seg.best_arm, 0):.2f})\n{_wrap('next: ' + alloc, 70)}"
        )
        ax.text(
            depth + 0.15,
            -row,
            text,
            ha="left",
            va="center",
            fontsize=8,
            zorder=3,
            bbox=dict(boxstyle="round", fc=arm_color(k), ec="black", alpha=0.3),
        )
        if level < depth:
            ax.plot([level, depth + 0.1], [-row, -row], color="#999999", lw=1, ls=":", zorder=1)
    ax.set_xlim(-0.3, depth + 2.6)
    ax.set_ylim(-n_leaves + 0.4, top)
    ax.set_title("Policy tree: segments, their best arm and the next round's allocation", fontsize=10)
    fig.tight_layout()
    return fig


def cumulative_regret(simulation: SimulationResult) -> plt.Figure:
    """Cumulative regret (expected outcome lost vs the oracle) of the loop and of uniform A/B."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    visitors = np.cumsum([r.n for r in simulation.rounds])
    ax.plot(visitors, simulation.cumulative_regret, "o-", label="Sortition adaptive loop", color=arm_color(1))
    ax.plot(
        visitors, simulation.cumulative_uniform_regret, "s--", label="uniform A/B test", color=arm_color(0)
    )
    ax.set_xlabel("visitors")
    ax.set_ylabel("cumulative regret vs oracle")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Cumulative regret", fontsize=10)
    fig.tight_layout()
    return fig


# --- tree helpers -------------------------------------------------------------------------------------
def _conditions(rule: Rule | AnyOf | None, observed: dict[str, Sequence[str]] | None) -> list[str]:
    """The rule's conditions, root first, each in readable words."""
    if rule is None:
        return []
    if isinstance(rule, AnyOf):  # an OR segment is one step: its conjunctions do not nest as a path
        return [readable(rule, observed)]
    return [readable(Rule((c,)), observed) for c in rule.conditions]


def _build(leaves: list[tuple[list[str], Any]], level: int) -> dict[str, Any]:
    """Group leaves by their condition at ``level`` (conditions are path steps, root first)."""
    if len(leaves) == 1 and len(leaves[0][0]) <= level:
        return {"segment": leaves[0][1], "children": []}
    groups: dict[str, list] = {}
    done = []
    for conds, seg in leaves:
        if len(conds) <= level:
            done.append((conds, seg))
        else:
            groups.setdefault(conds[level], []).append((conds, seg))
    children = [(edge, _build(members, level + 1)) for edge, members in groups.items()]
    children += [("(rest)", {"segment": seg, "children": []}) for _, seg in done]
    return {"segment": None, "children": children}


def _count_leaves(node: dict[str, Any]) -> int:
    return 1 if not node["children"] else sum(_count_leaves(c) for _, c in node["children"])


def _depth(node: dict[str, Any]) -> int:
    return 0 if not node["children"] else 1 + max(_depth(c) for _, c in node["children"])


def _layout(
    node: dict[str, Any], level: int, cursor: list[float], out: dict[int, tuple[float, float]]
) -> float:
    """(level, row) per node: leaves take consecutive rows, inner nodes sit at their children's middle."""
    if not node["children"]:
        row = cursor[0]
        cursor[0] += 1.0
    else:
        rows = [_layout(child, level + 1, cursor, out) for _, child in node["children"]]
        row = sum(rows) / len(rows)
    out[id(node)] = (float(level), row)
    return row


def _walk(node: dict[str, Any]):
    yield node
    for _, child in node["children"]:
        yield from _walk(child)


# Tree plot, in data units (a row is 1 unit, 0.85 inch): an edge label's bottom above its row, one of its
# 8-point lines.
_LABEL_LIFT, _LABEL_LINE = 0.18, 0.16


def _wrap(text: str, width: int = 48) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text
