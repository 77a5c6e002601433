"""Sample-ratio mismatch (SRM): is the observed split of traffic the one that was planned?

A mismatch means the assignment or the logging is broken (a bot filter acting on one arm, a redirect
that loses visitors, exposures logged only on success), and every estimate built on the data is
suspect. Two tests, by what is known:

- the plan (``sortition round``): per segment of the served plan, the observed counts per cell
  against the cell weights, and per segment and cell the counts per arm against the cell's arm
  probabilities; Pearson's chi-square goodness of fit, ``sum (O - E)^2 / E`` with (categories - 1)
  degrees of freedom. A row in an arm or cell the plan gives probability 0 fails outright.
- logged propensities only (``sortition analyze --propensity``): per arm, the inverse-propensity
  (Horvitz-Thompson) count ``sum_{i on a} 1 / p_i`` estimates the number of rows N; with its
  variance estimate ``sum_{i on a} (1 - p_i) / p_i^2``, ``z = (HT_a - N) / sd`` is standard normal
  when the propensities are right (two-sided p-value).

The family of tests fails when any p-value is below ``alpha / (number of tests)`` (Bonferroni;
``alpha = 0.001`` as is usual for SRM alarms, which must almost never fire by chance). Groups with
fewer than ``MIN_ROWS`` rows are not tested. Reference: Fabijan et al., "Diagnosing Sample Ratio
Mismatch in Online Controlled Experiments", KDD 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from sortition.experiment.cells import CELLS, Plan

ALPHA = 0.001
MIN_ROWS = 20


@dataclass(frozen=True)
class SRMCheck:
    """One test: the observed and expected counts of one group, the statistic and its p-value."""

    scope: str  # what was tested, in words ("segment 'device = mobile', cell 'optimized': arms")
    n: int
    observed: dict[str, float]
    expected: dict[str, float]
    statistic: float
    p_value: float


@dataclass(frozen=True)
class SRMResult:
    """Every test of one round's data; ``ok`` unless one p-value is below ``alpha / len(checks)``."""

    checks: tuple[SRMCheck, ...]
    method: str  # "plan" or "propensity"
    alpha: float = ALPHA

    @property
    def threshold(self) -> float:
        return self.alpha / max(1, len(self.checks))

    @property
    def failed(self) -> tuple[SRMCheck, ...]:
        return tuple(c for c in self.checks if c.p_value < self.threshold)

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        """One sentence for the console and the report banner."""
        if not self.checks:
            return "sample-ratio check: too few rows to test"
        if self.ok:
            worst = min(c.p_value for c in self.checks)
            return (f"sample-ratio check passed: {len(self.checks)} test(s) of the observed against the planned "
                    f"split, smallest p = {worst:.3g}")
        c = min(self.failed, key=lambda c: c.p_value)
        counts = ", ".join(f"{k} {_count(v)} (expected {e:,.1f})" for (k, v), e in
                           zip(c.observed.items(), c.expected.values(), strict=True))
        return (f"sample-ratio mismatch: {c.scope}: {counts}; p = {c.p_value:.2g} (threshold {self.threshold:.2g}, "
                f"{len(self.failed)} of {len(self.checks)} test(s) failed). The assignment or its logging is "
                "broken; the estimates are suspect")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "method": self.method, "alpha": self.alpha, "threshold": self.threshold,
                "message": self.describe(),
                "checks": [vars(c) | {"failed": c.p_value < self.threshold} for c in self.checks]}


def _count(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def chi_square(observed: Sequence[float], probabilities: Sequence[float]) -> tuple[float, float]:
    """Pearson's goodness of fit of ``observed`` counts to ``probabilities`` (same order; they are
    normalized). A count where the probability is 0 gives (inf, 0.0). One category: (0.0, 1.0)."""
    o = np.asarray(observed, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    if np.any((p <= 0) & (o > 0)):
        return float("inf"), 0.0
    keep = p > 0
    o, p = o[keep], p[keep] / p[keep].sum()
    if len(o) < 2:
        return 0.0, 1.0
    e = o.sum() * p
    statistic = float(np.sum((o - e) ** 2 / e))
    return statistic, float(stats.chi2.sf(statistic, len(o) - 1))


def srm_plan(plans: Sequence[Plan], rows: pd.DataFrame, *, alpha: float = ALPHA) -> SRMResult:
    """Test rows served by ``plans`` against them.

    Args:
        plans: every plan of the experiment, ``plans[r]`` served in round r.
        rows: one row per exposure with ``arm``, ``cell`` (control/explore/optimized; others are not
            tested), ``round`` (which plan served it; missing: the last plan) and the subject
            attributes the plan's segment rules read.
    Cost: one pass of the plan's rules per round, then counts by (segment, cell, arm) with one
    ``bincount`` (1M rows in well under a second).
    """
    checks: list[SRMCheck] = []
    last = len(plans) - 1
    rounds = rows["round"] if "round" in rows.columns else pd.Series(last, index=rows.index)
    rounds = pd.to_numeric(rounds, errors="coerce").fillna(last).astype(int).to_numpy()
    cell_code = _codes(rows["cell"], list(CELLS))  # -1: not a cell
    arm_seen, arm_names = pd.factorize(rows["arm"])
    arm_names = [str(a) for a in arm_names]
    labels = sorted(set(np.unique(rounds).tolist()))
    for r in labels:
        if not 0 <= r < len(plans):
            continue
        plan = plans[r]
        take = (rounds == r) & (cell_code >= 0)
        if take.sum() < MIN_ROWS:
            continue
        served = rows[take].reset_index(drop=True)
        segments = (*plan.segments, plan.default)
        present = [arm_names[i] for i in np.unique(arm_seen[take]) if i >= 0]
        names = list(plan.arms) + sorted(set(present) - set(plan.arms))
        lookup = np.array([names.index(a) for a in arm_names] or [0], dtype=np.int64)
        arm_code = lookup[arm_seen[take]]
        where = plan.segment_index(served)
        k, c = len(names), len(CELLS)
        counts = np.bincount((where * c + cell_code[take]) * k + arm_code,
                             minlength=len(segments) * c * k).reshape(len(segments), c, k)
        label = f"round {r}, " if len(labels) > 1 else ""
        for g, seg in enumerate(segments):
            if counts[g].sum() < MIN_ROWS:
                continue
            name = f"{label}segment {seg.description!r}"
            share = {cell: sum(seg.cells[cell].values()) for cell in CELLS}
            checks.append(_check(f"{name}: cells", dict(zip(CELLS, counts[g].sum(axis=1), strict=True)), share))
            for j, cell in enumerate(CELLS):
                observed = dict(zip(names, counts[g, j], strict=True))
                impossible = any(n > 0 and seg.cells[cell].get(a, 0.0) <= 0 for a, n in observed.items())
                positive = sum(p > 0 for p in seg.cells[cell].values())
                if impossible or (counts[g, j].sum() >= MIN_ROWS and positive > 1):
                    checks.append(_check(f"{name}, cell {cell!r}: arms", observed, seg.cells[cell]))
    return SRMResult(tuple(checks), "plan", alpha)


def _codes(values: pd.Series, categories: list[str]) -> np.ndarray:
    """(n,) position of each value in ``categories`` (as text), -1 for anything else."""
    seen, uniques = pd.factorize(values)
    lookup = np.array([categories.index(str(u)) if str(u) in categories else -1 for u in uniques] + [-1])
    return lookup[seen]  # factorize's -1 (missing) picks the trailing -1


def _check(scope: str, counts: dict[str, float], planned: dict[str, float]) -> SRMCheck:
    names = list(planned) + sorted(set(counts) - set(planned))
    observed = [float(counts.get(k, 0)) for k in names]
    probs = [float(planned.get(k, 0.0)) for k in names]
    statistic, p_value = chi_square(observed, probs)
    total = sum(p for p in probs if p > 0)
    n = int(sum(observed))
    shown = [k for k, o, p in zip(names, observed, probs, strict=True) if p > 0 or o > 0]
    return SRMCheck(
        scope, n,
        {k: observed[names.index(k)] for k in shown},
        {k: n * probs[names.index(k)] / total for k in shown},
        statistic, p_value,
    )


def srm_propensity(arm_index: np.ndarray, propensity: np.ndarray, arms: Sequence[str], *,
                   rounds: np.ndarray | None = None, alpha: float = ALPHA) -> SRMResult:
    """Per arm (and per round when ``rounds`` is given), the inverse-propensity count of its rows
    against the number of rows (see the module). Assumes every row could have received every arm
    that has rows in its round (true of Sortition's plans: the explore cell serves every active arm).

    Args:
        arm_index: (n,) int, index into ``arms``.
        propensity: (n,) the logged probability, in (0, 1], of the arm each row received.
        rounds: (n,) the round each row was served in, or None (one allocation throughout).
    """
    a = np.asarray(arm_index)
    p = np.asarray(propensity, dtype=float)
    groups = np.zeros(len(a), dtype=int) if rounds is None else np.asarray(rounds)
    checks: list[SRMCheck] = []
    labels = sorted(set(groups.tolist()))
    for g in labels:
        rows = groups == g
        n = int(rows.sum())
        if n < MIN_ROWS:
            continue
        where = f"round {g}, " if len(labels) > 1 else ""
        for k, arm in enumerate(arms):
            on = rows & (a == k)
            ht = float(np.sum(1.0 / p[on]))
            var = float(np.sum((1.0 - p[on]) / p[on] ** 2))
            if var <= 0:
                continue  # no rows, or every row of this arm had probability 1: nothing random to test
            z = (ht - n) / np.sqrt(var)
            checks.append(SRMCheck(
                f"{where}arm {arm!r}: inverse-propensity count of its {int(on.sum()):,} rows vs {n:,} rows",
                int(on.sum()), {str(arm): ht}, {str(arm): float(n)}, float(z * z),
                float(2 * stats.norm.sf(abs(z))),
            ))
    return SRMResult(tuple(checks), "propensity", alpha)
