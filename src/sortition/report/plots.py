"""Matplotlib figures of an adaptive experiment (each function returns a Figure; Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ARM_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def arm_color(index: int) -> str:
    return ARM_COLORS[index % len(ARM_COLORS)]


def allocation_over_rounds(experiment: Any) -> plt.Figure:
    """Per final segment, the arm probabilities its visitors were served in each round.

    Segments are re-discovered every round, so each round's plan is evaluated on the final
    segment's own visitors (first matching allocation, as the flag serves) and averaged.
    """
    result = experiment.results_[-1]
    data = experiment.data_
    arms = experiment.arms
    plans = experiment.plans_
    final_index = experiment.plan_.segment_index(data)
    segments = result.segments
    ncols = min(3, max(1, len(segments)))
    nrows = int(np.ceil(len(segments) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    rounds = np.arange(len(plans))
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
        ax.set_title(_wrap(f"{seg.description}  ({seg.share:.0%})"), fontsize=8)
        ax.set_xticks(rounds)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylim(0, 1)
    for j in range(len(segments), nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    axes[0][0].set_ylabel("share of traffic")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("Allocation per segment over rounds (last bar: next round's plan)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.legend(handles, labels, loc="lower center", ncol=len(arms), frameon=False, fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.04 / nrows))
    return fig


def lift_intervals(result: Any, level: float = 0.9) -> plt.Figure:
    """Posterior lift vs control per segment and treatment: mean and credible interval."""
    segments = result.segments
    treatments = [lift.arm for lift in segments[0].lifts] if segments else []
    rows = len(segments) + 1
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * rows * max(1, len(treatments)) + 1.0))
    labels, y = [], 0.0
    ticks = []
    blocks = [("all visitors", result.lifts), *[(s.description, s.lifts) for s in segments]]
    height = 0.8 / max(1, len(treatments))
    for name, lifts in blocks:
        for j, lift in enumerate(lifts):
            pos = y + j * height
            ax.errorbar(
                lift.mean, pos, xerr=[[lift.mean - lift.lower], [lift.upper - lift.mean]], fmt="o",
                color=arm_color(j + 1), capsize=3, label=lift.arm if name == "all visitors" else None,
            )
        ticks.append(y + height * (len(lifts) - 1) / 2)
        labels.append(_wrap(name, 38))
        y += 1.0
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"lift vs control (outcome units), {level:.0%} credible interval")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Posterior lift per segment", fontsize=10)
    fig.tight_layout()
    return fig


def policy_tree(result: Any, arms: Sequence[str]) -> plt.Figure:
    """The segments as a tree: edges carry the conditions, leaves the winner and allocation."""
    leaves = [(_conditions(s.rule), s) for s in result.segments]
    tree = _build(leaves, 0)
    width = max(1, _count_leaves(tree))
    depth = _depth(tree)
    fig, ax = plt.subplots(figsize=(max(6.0, 3.1 * width), 1.9 * (depth + 1) + 0.6))
    ax.axis("off")
    positions: dict[int, tuple[float, float]] = {}
    _layout(tree, 0, [0.0], positions)
    for node in _walk(tree):
        x, yy = positions[id(node)]
        for edge, child in node["children"]:
            cx, cy = positions[id(child)]
            ax.plot([x, cx], [-yy, -cy], color="#999999", lw=1, zorder=1)
            ax.text(x + 0.7 * (cx - x), -(yy + 0.7 * (cy - yy)), _wrap(edge, 22), fontsize=7, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none"), zorder=2)
        seg = node.get("segment")
        if seg is None:
            text = "all visitors" if node is tree else ""
            if text:
                ax.text(x, -yy, text, ha="center", va="center", fontsize=8,
                        bbox=dict(boxstyle="round", fc="#eeeeee", ec="#999999"))
            else:
                ax.plot([x], [-yy], "o", color="#999999", zorder=3)
            continue
        k = list(arms).index(seg.best_arm)
        alloc = ", ".join(f"{a} {p:.0%}" for a, p in seg.arm_probabilities.items() if p > 0)
        text = (f"segment {seg.id} ({seg.share:.0%})\nbest: {seg.best_arm} "
                f"(P={seg.arm_best_probabilities.get(seg.best_arm, 0):.2f})\n{_wrap(alloc, 30)}")
        ax.text(x, -yy, text, ha="center", va="center", fontsize=7, zorder=3,
                bbox=dict(boxstyle="round", fc=arm_color(k), ec="black", alpha=0.35))
    xs = [p[0] for p in positions.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-depth - 0.6, 0.6)
    ax.set_title("Policy tree: segments, their best arm and next round's allocation", fontsize=10)
    fig.tight_layout()
    return fig


def cumulative_regret(simulation: Any) -> plt.Figure:
    """Cumulative regret (expected outcome lost vs the oracle) of the loop and of uniform A/B."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    visitors = np.cumsum([r.n for r in simulation.rounds])
    ax.plot(visitors, simulation.cumulative_regret, "o-", label="Sortition adaptive loop", color=arm_color(1))
    ax.plot(visitors, simulation.cumulative_uniform_regret, "s--", label="uniform A/B test", color=arm_color(0))
    ax.set_xlabel("visitors")
    ax.set_ylabel("cumulative regret vs oracle")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Cumulative regret", fontsize=10)
    fig.tight_layout()
    return fig


# --- tree helpers -------------------------------------------------------------------------------------
def _conditions(rule: Any) -> list[str]:
    if rule is None:
        return []
    conditions = getattr(rule, "conditions", None)
    if conditions is None:
        return [rule.describe()]
    return [c.describe() if hasattr(c, "describe") else str(c) for c in conditions]


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


def _layout(node: dict[str, Any], level: int, cursor: list[float], out: dict[int, tuple[float, float]]) -> float:
    if not node["children"]:
        x = cursor[0]
        cursor[0] += 1.0
    else:
        xs = [_layout(child, level + 1, cursor, out) for _, child in node["children"]]
        x = sum(xs) / len(xs)
    out[id(node)] = (x, float(level))
    return x


def _walk(node: dict[str, Any]):
    yield node
    for _, child in node["children"]:
        yield from _walk(child)


def _wrap(text: str, width: int = 48) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text
