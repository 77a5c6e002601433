"""Plans as flag configurations (UFC): what Sortition's Client and any Eppo SDK serve.

A round's plan becomes one flag whose allocations are the plan's segments in tree order
(rules = the segment rule's flag-format JSON) followed by a catch-all with no rules. Each
allocation's splits send shard ranges (``TOTAL_SHARDS`` shards, one salt per experiment) to
(arm, cell) pairs. ``extraLogging`` on every split names the cell, the segment, the round and
the propensity actually served (the arm's shard count / ``TOTAL_SHARDS``), so every logged
assignment carries the probability it was assigned with.

Layout: the salt never changes between rounds, so a subject keeps its shard, and the arm it is
served changes only when its shard changes arm. A first plan cuts the shard line into one
contiguous block per arm, in arm order, and each arm's block into its cells (control, explore,
optimized). Every later round's plan is laid out from the last one (:func:`carry_layout`, which
the loop applies to each segment from the previous segment holding most of its visitors): each
arm keeps as many of its old shards as its new weight allows and only the shards the shrinking
arms free change arm, the fewest any layout can move (the total-variation distance between the
two splits; moving the contiguous blocks' boundaries instead moves up to ``sum_k |F_k' - F_k|``,
F the cumulative arm shares). A split may then hold several shard ranges; served probabilities
are the same shard counts either way.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from sortition.experiment.cells import CELLS, Plan, SegmentPlan, ShardBlock
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


def _cell_counts(segment: SegmentPlan, arms: Sequence[str], total_shards: int) -> np.ndarray:
    """(K, len(CELLS)) int64: the shards each (arm, cell) gets: the arm's probability over ``total_shards``
    (Hamilton), then the arm's count over its cells (so an arm's served share never depends on its cells)."""
    arm_counts = largest_remainder([segment.arm_probabilities[a] for a in arms], total_shards)
    out = np.zeros((len(arms), len(CELLS)), dtype=np.int64)
    for k, (arm, count) in enumerate(zip(arms, arm_counts, strict=True)):
        if count:
            out[k] = largest_remainder([segment.cells[c].get(arm, 0.0) for c in CELLS], int(count))
    return out


def _runs(shards: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Ascending shard numbers as maximal ``(start, end)`` runs (end exclusive)."""
    if shards.size == 0:
        return ()
    breaks = np.flatnonzero(np.diff(shards) != 1) + 1
    starts = shards[np.r_[0, breaks]]
    ends = shards[np.r_[breaks - 1, shards.size - 1]] + 1
    return tuple((int(a), int(b)) for a, b in zip(starts, ends, strict=True))


def _blocks(arm_of_shard: np.ndarray, counts: np.ndarray, arms: Sequence[str]) -> tuple[ShardBlock, ...]:
    """Each arm's shards (``arm_of_shard``: (total,) arm index) cut, in ascending order, into its cells
    (``counts``: (K, len(CELLS))), as blocks in arm then cell order."""
    blocks = []
    for k, arm in enumerate(arms):
        own = np.flatnonzero(arm_of_shard == k)
        cuts = np.cumsum(counts[k])
        for cell, lo, hi in zip(CELLS, np.r_[0, cuts[:-1]], cuts, strict=True):
            if hi > lo:
                blocks.append(ShardBlock(arm, cell, _runs(own[lo:hi])))
    return tuple(blocks)


def shard_layout(segment: SegmentPlan, arms: Sequence[str], total_shards: int = TOTAL_SHARDS) -> list[dict[str, Any]]:
    """The (arm, cell) shard ranges of one segment, in arm then cell order (see module docstring).

    The segment's carried layout (``segment.shards``, from :func:`carry_layout`) when it has one,
    else the contiguous layout.

    Returns:
        ``[{"arm", "cell", "ranges", "propensity"}]`` for every non-empty (arm, cell): ``ranges`` a
        list of ``(start, end)`` (end exclusive, ascending); all ranges together tile
        ``[0, total_shards)``; ``propensity`` is the arm's served probability (its shards / total).
    Raises:
        ValueError: a carried layout whose ranges do not tile the shards, or whose shard counts are not
            the segment's weights' (a plan whose weights were changed without laying its shards out
            again, or an edited state file).
    """
    counts = _cell_counts(segment, arms, total_shards)
    if segment.shards is None:
        blocks = _blocks(np.repeat(np.arange(len(arms)), counts.sum(axis=1)), counts, arms)
    else:
        blocks = segment.shards
        stray = sorted({b.arm for b in blocks} - set(arms)) + sorted({b.cell for b in blocks} - set(CELLS))
        if stray:
            raise ValueError(f"segment {segment.id!r}: its shard layout names {stray}, which are not among the "
                             f"arms {list(arms)} or the cells {list(CELLS)}")
        laid = np.zeros_like(counts)
        for block in blocks:
            laid[list(arms).index(block.arm), CELLS.index(block.cell)] += sum(b - a for a, b in block.ranges)
        edges = sorted(r for block in blocks for r in block.ranges)
        if [a for a, _ in edges] != [0, *(b for _, b in edges[:-1])] or edges[-1][1] != total_shards:
            raise ValueError(f"segment {segment.id!r}: its shard ranges do not tile [0, {total_shards}) "
                             "(overlaps or gaps); the plan was edited")
        if not np.array_equal(laid, counts):
            raise ValueError(
                f"segment {segment.id!r}: its shard layout serves {laid.sum(axis=1).tolist()} shards per arm "
                f"{list(arms)}, but its weights call for {counts.sum(axis=1).tolist()}; lay it out again "
                "(export.carry_layout) after changing the weights")
    arm_shards = counts.sum(axis=1)
    return [{"arm": b.arm, "cell": b.cell, "ranges": list(b.ranges),
             "propensity": int(arm_shards[list(arms).index(b.arm)]) / total_shards} for b in blocks]


def shard_arms(segment: SegmentPlan, arms: Sequence[str], total_shards: int = TOTAL_SHARDS) -> np.ndarray:
    """(total_shards,) int64: the index in ``arms`` of the arm each shard serves in ``segment``."""
    out = np.full(total_shards, -1, dtype=np.int64)
    for part in shard_layout(segment, arms, total_shards):
        for start, end in part["ranges"]:
            out[start:end] = list(arms).index(part["arm"])
    return out


def carry_layout(segment: SegmentPlan, previous: SegmentPlan, arms: Sequence[str],
                 total_shards: int = TOTAL_SHARDS) -> SegmentPlan:
    """``segment`` with its shards laid out from ``previous``'s, moving as few shards as possible.

    Every arm keeps the lowest of its ``previous`` shards, up to its new count; the shards freed by the
    arms that shrank go, in ascending order, to the arms that grew, in arm order. So exactly
    ``sum_k max(0, n_k - n'_k)`` shards change arm (n, n' the arms' old and new shard counts): the
    total-variation distance between the two arm splits, the fewest any layout can move (the
    contiguous layout moves up to ``sum_k |F_k' - F_k|``, F the cumulative shares). Within an arm its
    shards are cut into cells in ascending order; a subject that changes cell keeps its arm. Served
    probabilities are those of the contiguous layout, shard for shard (the same counts).

    Args:
        segment: the new segment plan (its weights give the counts).
        previous: the segment plan whose shards these visitors were served last round (the same
            arms, in the same order).
        arms: all arms, control first.
    """
    counts = _cell_counts(segment, arms, total_shards)
    target = counts.sum(axis=1)
    before = shard_arms(previous, arms, total_shards)
    after = np.full(total_shards, -1, dtype=np.int64)
    for k in range(len(arms)):
        kept = np.flatnonzero(before == k)[: target[k]]
        after[kept] = k
    held = np.bincount(after[after >= 0], minlength=len(arms))
    after[after < 0] = np.repeat(np.arange(len(arms)), target - held)
    return replace(segment, shards=_blocks(after, counts, arms))


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
                "shards": [{"salt": salt, "ranges": [{"start": a, "end": b} for a, b in part["ranges"]]}],
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
