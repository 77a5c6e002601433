"""Plans as flag configurations (UFC): what Sortition's Client and any Eppo SDK serve.

A round's plan becomes one flag whose allocations are the plan's segments in tree order
(rules = the segment rule's flag-format JSON) followed by a catch-all with no rules. Each
allocation's splits send shard ranges (``TOTAL_SHARDS`` shards, one salt per experiment) to
(arm, cell) pairs. ``extraLogging`` on every split names the cell, the segment, the round and
the propensity actually served (the arm's shard count / ``TOTAL_SHARDS``), so every logged
assignment carries the probability it was assigned with.

Layout: the shard line is cut into one contiguous block per arm, in arm order, and each arm's
block into its cells (control, explore, optimized). The salt never changes between rounds,
so a subject keeps its shard; when arm weights move by small amounts, block boundaries move
by the same amounts and only the subjects between the old and new boundaries change arm
(at most ``sum_k |F_k' - F_k|`` of the traffic, F the cumulative arm shares).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from sortition.experiment.cells import CELLS, Plan, SegmentPlan
from sortition.serving.sharding import TOTAL_SHARDS  # the one shard count (re-exported here)
from sortition.store.records import CELL_KEY, PROPENSITY_KEY, ROUND_KEY, SEGMENT_KEY


def largest_remainder(weights: Sequence[float] | np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total``, each within 1 of ``weights * total`` (Hamilton).

    Weights are normalized first. Ties in the remainders go to the earlier entry, so the
    result is deterministic.

    Args:
        weights: (m,) non-negative weights, not all zero.
        total: the integer total to distribute.
    Returns:
        (m,) int64 counts.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-d array, got shape {w.shape}")
    if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    if total < 0:
        raise ValueError(f"total must be non-negative, got {total}")
    exact = w / w.sum() * total
    counts = np.floor(exact + 1e-12).astype(np.int64)
    short = int(total - counts.sum())
    if short > 0:
        remainder = exact - counts
        # stable sort: ties go to the earlier entry
        order = np.argsort(-remainder, kind="stable")
        counts[order[:short]] += 1
    return counts


def experiment_salt(experiment_key: str) -> str:
    """The one salt of an experiment: constant across rounds so subjects keep their shards."""
    return f"sortition-{experiment_key}"


def shard_layout(segment: SegmentPlan, arms: Sequence[str], total_shards: int = TOTAL_SHARDS) -> list[dict[str, Any]]:
    """The (arm, cell) shard ranges of one segment, in layout order (see module docstring).

    Returns:
        ``[{"arm", "cell", "start", "end", "propensity"}]`` for every non-empty range; the
        ranges tile ``[0, total_shards)``; ``propensity`` is the arm's served probability.
    """
    arm_probs = np.array([segment.arm_probabilities[a] for a in arms])
    arm_counts = largest_remainder(arm_probs, total_shards)
    out: list[dict[str, Any]] = []
    start = 0
    for arm, count in zip(arms, arm_counts, strict=True):
        if count == 0:
            continue
        cell_w = np.array([segment.cells[c].get(arm, 0.0) for c in CELLS])
        cell_counts = largest_remainder(cell_w, int(count))
        for cell, c_count in zip(CELLS, cell_counts, strict=True):
            if c_count == 0:
                continue
            out.append(
                {
                    "arm": arm,
                    "cell": cell,
                    "start": int(start),
                    "end": int(start + c_count),
                    "propensity": int(count) / total_shards,
                }
            )
            start += int(c_count)
    return out


def _rules_json(rule: Any) -> list[dict[str, Any]]:
    """The allocation's ``rules``: empty (everyone) for no rule or a rule without conditions."""
    if rule is None:
        return []
    data = rule.to_json()
    rules = data if isinstance(data, list) else [data]
    if any(not r.get("conditions") for r in rules):
        return []
    return rules


def _allocation(
    key: str, segment: SegmentPlan, arms: Sequence[str], salt: str, round_: int, do_log: bool
) -> dict[str, Any]:
    splits = []
    for part in shard_layout(segment, arms):
        splits.append(
            {
                "variationKey": part["arm"],
                "shards": [{"salt": salt, "ranges": [{"start": part["start"], "end": part["end"]}]}],
                "extraLogging": {
                    CELL_KEY: part["cell"],
                    SEGMENT_KEY: str(segment.id),
                    ROUND_KEY: str(round_),
                    PROPENSITY_KEY: repr(part["propensity"]),
                },
            }
        )
    allocation: dict[str, Any] = {"key": key, "splits": splits, "doLog": bool(do_log)}
    rules = _rules_json(segment.rule)
    if rules:
        allocation["rules"] = rules
    return allocation


def allocation_key(segment_id: Any) -> str:
    """The allocation key of a segment (the catch-all is ``"default"``)."""
    return "default" if segment_id == "default" else f"segment-{segment_id}"


def plan_to_flag(plan: Plan, flag_key: str, *, salt: str | None = None, do_log: bool = True) -> dict[str, Any]:
    """One UFC flag for ``plan``: an allocation per segment (tree order), then the catch-all.

    Args:
        plan: the round's plan.
        flag_key: the flag (experiment) key.
        salt: the shard salt; default :func:`experiment_salt` of ``flag_key``. Keep it fixed
            for the whole experiment.
        do_log: whether assignments are logged (they must be, for the loop to learn).
    """
    if not isinstance(flag_key, str) or not flag_key:
        raise ValueError(f"flag_key must be a non-empty string, got {flag_key!r}")
    salt = salt or experiment_salt(flag_key)
    allocations = [
        _allocation(allocation_key(s.id), s, plan.arms, salt, plan.round, do_log) for s in plan.segments
    ]
    allocations.append(_allocation(allocation_key("default"), plan.default, plan.arms, salt, plan.round, do_log))
    return {
        "key": flag_key,
        "enabled": True,
        "variationType": "STRING",
        "variations": {a: {"key": a, "value": a} for a in plan.arms},
        "allocations": allocations,
        "totalShards": TOTAL_SHARDS,
    }


def plan_to_configuration(
    plan: Plan,
    flag_key: str,
    *,
    salt: str | None = None,
    created_at: str | None = None,
    environment: str = "sortition",
) -> dict[str, Any]:
    """A complete UFC configuration (``flags-v1`` shape) holding the plan's flag.

    Feed it to ``sortition.serving.Configuration.from_json`` or, serialized, to any Eppo SDK.
    """
    if created_at is None:
        created_at = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "createdAt": created_at,
        "format": "SERVER",
        "environment": {"name": environment},
        "flags": {flag_key: plan_to_flag(plan, flag_key, salt=salt)},
    }


def served_probabilities(flag: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per allocation key, the arm probabilities the flag serves (shard counts / total)."""
    total = int(flag.get("totalShards", TOTAL_SHARDS))
    out: dict[str, dict[str, float]] = {}
    for allocation in flag["allocations"]:
        probs = {a: 0.0 for a in flag["variations"]}
        for split in allocation["splits"]:
            width = sum(r["end"] - r["start"] for sh in split["shards"] for r in sh["ranges"])
            probs[split["variationKey"]] += width / total
        out[allocation["key"]] = probs
    return out
