"""The report's figures as plain data: ``summary.json``, the per round x segment x arm table
(``rounds.parquet`` / ``rounds.csv``), per-arm statistics and data quality.

Round numbers are counted from 1 everywhere a person or a dashboard reads them
(:attr:`RoundResult.number`); the ``round`` logged in extraLogging is the 0-based index (``number - 1``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from sortition.data.validation import covariate_problem
from sortition.experiment.results import RoundResult, SegmentResult
from sortition.experiment.sequential import SequentialExperiment
from sortition.experiment.simulation import SimulationResult
from sortition.experiment.steps import ROLE_COLUMNS
from sortition.report.rules import levels, readable, set_columns

ROUND_TABLE_COLUMNS = (
    "round",
    "segment",
    "rule",
    "exact_rule",
    "share",
    "arm",
    "is_control",
    "n_round",
    "n_total",
    "mean_outcome",
    "p_best",
    "next_probability",
    "lift_mean",
    "lift_lower",
    "lift_upper",
    "prob_positive",
    "decision",
)


@dataclass(frozen=True)
class ArmStats:
    """One arm in one scope, over every row read so far: counts and observed means (metric units)."""

    scope: str
    arm: str
    n: int
    mean: float
    conversion_rate: float | None  # share of rows with an outcome > 0 (revenue and binary)
    order_value: float | None  # mean outcome among rows with an outcome > 0 (revenue)


def churn(result: RoundResult) -> float | None:
    """Share of visitors whose segment or served arm changed since the last round (None in round 1
    or before the loop computes it)."""
    return None if result.churn is None else float(result.churn)


def segment_change_text(experiment: SequentialExperiment, result: RoundResult) -> str:
    """How the round's segments came about, as a sentence ('' for the first tree and older state files)."""
    from sortition.experiment import steps

    if result.round == 0 or result.segment_change in ("", "first"):
        return ""
    if result.segment_change == "same groups":
        return "Segments: the same groups of visitors as last round."
    established = experiment.results_[result.round - 1].segments_established
    needed = steps.resegment_threshold(experiment.resegment_probability, established)
    evidence = (f"P(better) = {result.resegment_probability:.2f}; {needed:.2f} needed"
                f"{'' if established else ' while segments settle'}")
    what = {"kept": "kept from last round", "one segment": "one segment changed",
            "new tree": "replaced by the new tree"}[result.segment_change]
    return f"Segments: {what} ({evidence})."


def churn_cap_note(experiment: SequentialExperiment, result: RoundResult) -> str:
    """'' unless the churn cap held the round's weights back; then how far they moved, in parentheses."""
    if result.allocation_step >= 1:
        return ""
    # on a one-segment change only the segments that are still last round's groups are held back
    whose = "the other segments' weights" if result.segment_change == "one segment" else "the weights"
    return (f" (capped at max_churn {experiment.max_churn:.0%}: {whose} moved {result.allocation_step:.0%} "
            "of the way to this round's Thompson weights)")


def fit_settings(experiment: SequentialExperiment) -> dict[str, Any] | None:
    """What reproduces the round's fit: the experiment's seed (each round's fit seed is derived from it and
    the round: ``fit_seed``), the engine, draws and, for BCF, the thread count (another count gives other
    draws) and warm start; None when the posterior is not at hand (a reloaded experiment before its next
    round)."""
    posterior = experiment.posterior_
    if posterior is None:
        return None
    info = posterior.info
    out = {"seed": experiment.seed, "fit_seed": info.get("seed")}
    return out | {k: info[k] for k in ("engine", "draws", "num_threads", "warm_start") if k in info}


def fit_text(settings: dict[str, Any] | None) -> str:
    """``100 draws, 2 threads, warm start, seed 7`` (or ``cold start: no previous fit``) for the report."""
    if not settings:
        return ""
    threads = settings.get("num_threads")
    warm = str(settings.get("warm_start") or "")
    parts = [f"{settings['draws']} draws" if "draws" in settings else "",
             "" if threads is None else f"{threads} thread{'' if threads == 1 else 's'}",
             "warm start" if warm == "warm" else warm.replace("cold (", "cold start: ", 1).removesuffix(")"),
             f"seed {settings['seed']}"]
    return ", ".join(p for p in parts if p)


def rule_texts(
    experiment: SequentialExperiment, result: RoundResult, data: pd.DataFrame | None = None
) -> dict[Any, tuple[str, str]]:
    """Per segment id: (readable rule, exact rule)."""
    data = experiment.data_ if data is None else data
    seen = {} if data is None else levels(data, set_columns([s.rule for s in result.segments]))
    return {s.id: (readable(s.rule, seen), s.description) for s in result.segments}


def segment_mask(segment: SegmentResult, frame: pd.DataFrame) -> np.ndarray:
    """(n,) bool: the rows of ``frame`` in the segment."""
    if segment.rule is None:
        return np.ones(len(frame), dtype=bool)
    return np.asarray(segment.rule.mask(frame), dtype=bool)


def arm_stats(
    experiment: SequentialExperiment,
    scope: str,
    mask: np.ndarray | None = None,
    data: pd.DataFrame | None = None,
) -> list[ArmStats]:
    """Per arm (control first) over the rows read so far (``mask``: a scope's rows)."""
    data = experiment.data_ if data is None else data
    if data is None:
        return []
    if mask is not None:
        data = data[mask]
    money = experiment.outcome in ("revenue", "binary")
    out = []
    for arm in experiment.arms:
        y = data.loc[data["arm"].astype(str) == arm, "outcome"].to_numpy(dtype=float)
        paid = y[y > 0]
        out.append(
            ArmStats(
                scope,
                arm,
                int(len(y)),
                float(y.mean()) if len(y) else math.nan,
                float((y > 0).mean()) if money and len(y) else None,
                float(paid.mean()) if experiment.outcome == "revenue" and len(paid) else None,
            )
        )
    return out


def data_quality(experiment: SequentialExperiment, data: pd.DataFrame | None = None) -> dict[str, Any]:
    """Rows read per round, covariates used and dropped (with why), missing-value rates."""
    data = experiment.data_ if data is None else data
    if data is None:
        return {}
    candidates = experiment.covariates or [c for c in data.columns if c not in ROLE_COLUMNS]
    posterior = experiment.posterior_
    used = (
        list(posterior.data.covariates.columns)
        if posterior is not None and posterior.data is not None
        else None
    )
    dropped = {}
    for col in candidates:
        if col in data.columns and (used is None or col not in used):
            reason = covariate_problem(data[col])
            if reason is not None or used is not None:
                dropped[col] = reason or "not used by the model"
    return {
        "rows_read": int(len(data)),
        "rows_per_round": {int(r) + 1: int(n) for r, n in data["round"].value_counts().sort_index().items()},
        "rows_dropped": 0,
        "covariates": [c for c in candidates if c not in dropped],
        "covariates_dropped": dropped,
        "missing_rates": {c: float(data[c].isna().mean()) for c in candidates if c in data.columns},
    }


def round_table(experiment: SequentialExperiment, data: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per round x segment x arm, for dashboards (columns :data:`ROUND_TABLE_COLUMNS`).

    ``n_round`` counts the round's own rows in the segment on the arm, ``n_total`` all rows so far;
    ``p_best`` and ``next_probability`` are the segment's P(arm is best) and the next plan's
    probability; lifts are vs control (empty on the control row); ``decision`` is the segment's
    (``SHIP arm`` / ``CONTINUE`` / ``STOP``; empty only for rounds saved before decisions were kept).
    """
    data = experiment.data_ if data is None else data
    rows = []
    for result in experiment.results_:
        upto = data[data["round"] <= result.round] if data is not None else None
        texts = rule_texts(experiment, result, data)
        for seg in result.segments:
            mask = segment_mask(seg, upto) if upto is not None else None
            decision = result.decision(seg.id)
            lifts = {lift.arm: lift for lift in seg.lifts}
            for arm in experiment.arms:
                if upto is not None:
                    on_arm = mask & (upto["arm"].astype(str) == arm).to_numpy()
                    this = on_arm & (upto["round"] == result.round).to_numpy()
                    n_total, n_round = int(on_arm.sum()), int(this.sum())
                    mean = float(upto.loc[on_arm, "outcome"].mean()) if n_total else math.nan
                else:
                    n_total = n_round = 0
                    mean = math.nan
                lift = lifts.get(arm)
                rows.append(
                    {
                        "round": result.number,
                        "segment": str(seg.id),
                        "rule": texts[seg.id][0],
                        "exact_rule": texts[seg.id][1],
                        "share": seg.share,
                        "arm": arm,
                        "is_control": arm == experiment.arms[0],
                        "n_round": n_round,
                        "n_total": n_total,
                        "mean_outcome": mean,
                        "p_best": seg.arm_best_probabilities.get(arm, 0.0),
                        "next_probability": seg.arm_probabilities.get(arm, 0.0),
                        "lift_mean": None if lift is None else lift.mean,
                        "lift_lower": None if lift is None else lift.lower,
                        "lift_upper": None if lift is None else lift.upper,
                        "prob_positive": None if lift is None else lift.prob_positive,
                        "decision": None if decision is None else decision.label,
                    }
                )
    frame = pd.DataFrame(rows, columns=list(ROUND_TABLE_COLUMNS))
    for col in ("lift_mean", "lift_lower", "lift_upper", "prob_positive", "mean_outcome"):
        frame[col] = frame[col].astype("float64")
    return frame


def decision_records(result: RoundResult, texts: dict[Any, tuple[str, str]]) -> list[dict[str, Any]]:
    """The round's decisions (one per scope) as JSON-ready dicts."""
    out = []
    for d in result.decisions:
        rule = ("everyone", "everyone") if d.scope == "overall" else texts.get(d.scope, (d.rule, d.rule))
        out.append(
            {
                **asdict(d),
                "scope": d.scope if d.scope == "overall" else str(d.scope),
                "rule": rule[0],
                "exact_rule": rule[1],
                "label": d.label,
            }
        )
    return out


def summary(experiment: SequentialExperiment, simulation: SimulationResult | None = None) -> dict[str, Any]:
    """The figures the CLI prints and the report shows, as plain data (``summary.json``)."""
    if not experiment.results_:
        raise ValueError("the experiment has no completed round to summarize; call advance() first")
    result = experiment.results_[-1]
    data = experiment.data_
    texts = rule_texts(experiment, result, data)
    out: dict[str, Any] = {
        "round": result.number,
        "rounds": len(experiment.results_),
        "next_round": result.number + 1,
        "visitors": result.n_total,
        "visitors_this_round": result.n_round,
        "arms": list(experiment.arms),
        "control": experiment.arms[0],
        "outcome": experiment.outcome,
        "active_arms": list(experiment.active_arms_),
        "dropped": [a for a in experiment.arms if a not in experiment.active_arms_],
        "churn": churn(result),
        "allocation_step": result.allocation_step,
        "segment_change": result.segment_change or None,
        "resegment_probability": result.resegment_probability,
        "decisions": decision_records(result, texts),
        "segments": [
            {
                "id": s.id,
                "rule": texts[s.id][0],
                "exact_rule": s.description,
                "share": s.share,
                "best_arm": s.best_arm,
                "p_best": s.arm_best_probabilities.get(s.best_arm, 0.0),
                "decision": None if result.decision(s.id) is None else result.decision(s.id).label,
                "next_allocation": s.arm_probabilities,
            }
            for s in result.segments
        ],
        "graduations": [asdict(g) for g in result.graduations],
        "lifts": [asdict(lift) for lift in result.lifts],
        "data_quality": data_quality(experiment, data),
        "fit": fit_settings(experiment),
    }
    if simulation is not None:
        visitors = max(1, out["visitors"])
        out["regret"] = {
            "loop": simulation.regret,
            "uniform_ab": simulation.uniform_regret,
            "saved_vs_uniform": simulation.uniform_regret - simulation.regret,
            "per_visitor_loop": simulation.regret / visitors,
            "per_visitor_uniform": simulation.uniform_regret / visitors,
        }
        out["segment_accuracy"] = simulation.segment_accuracy
        out["policy_values"] = simulation.policy_values
        out["truth"] = [
            {
                "rule": c.description,
                "best_arm": c.best_arm,
                "true_best_arm": c.true_best_arm,
                "correct": c.correct,
            }
            for c in simulation.segments
        ]
    return out


def json_ready(value: Any) -> Any:
    """Plain JSON data: numpy scalars as Python numbers, NaN/inf as None (strict JSON has neither),
    tuples as lists, anything else unknown as text."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
