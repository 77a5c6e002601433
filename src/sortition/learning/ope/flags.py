"""A flag (UFC) as an allocation plan: each subject's probability of every variation.

Serving is deterministic per subject (an md5 shard of salt + subject key), but over subjects the
shards are uniform and independent across salts, so a flag is a randomized policy: given the
allocations whose rules the subject's attributes match (serving's own rule matcher decides), the
probability of a variation is the share of the shard space (over every salt the flag uses) whose
first matching allocation and split serve it. That is computed exactly, by enumerating the
elementary shard intervals of each salt.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sortition.learning.ope.data import OffPolicyData
from sortition.learning.ope.plans import plan_data
from sortition.names import did_you_mean, listing
from sortition.serving.configuration import Configuration
from sortition.serving.evaluation import rule_matches
from sortition.serving.model import Allocation, Flag

MAX_CELLS = 200_000


def _compiled_flag(flags: Mapping[str, Any] | str | bytes, flag_key: str) -> Flag:
    config = Configuration.from_json(flags)
    if config.obfuscated:
        raise ValueError("flags is an obfuscated (CLIENT) configuration; evaluate plans on the SERVER form")
    flag = config.get_flag(flag_key)
    if flag is None:
        raise ValueError(f"flag {flag_key!r} is not in the flags configuration"
                         f"{did_you_mean(flag_key, config.flags)}; its flags: {listing(config.flags)}")
    return flag


def _shard_split_probabilities(flag: Flag, allocations: Sequence[Allocation]) -> dict[str | None, float]:
    """Probability of each variation key (None: no allocation serves, the default) when the
    subject is eligible for ``allocations`` (in order)."""
    total = flag.total_shards
    cuts: dict[str, set[int]] = {}
    for alloc in allocations:
        for split in alloc.splits:
            for sh in split.shards:
                points = cuts.setdefault(sh.salt, {0, total})
                for start, end in sh.ranges:
                    points.update((min(max(start, 0), total), min(max(end, 0), total)))
    salts = sorted(cuts)
    cells = []  # per salt: (representative shard, probability) of each elementary interval
    n_cells = 1
    for salt in salts:
        pts = sorted(cuts[salt])
        cells.append([(a, (b - a) / total) for a, b in itertools.pairwise(pts) if b > a])
        n_cells *= len(cells[-1])
    if n_cells > MAX_CELLS:
        raise ValueError(
            f"flag {flag.key!r} has too many shard intervals to enumerate ({n_cells} cells); "
            "simplify its splits or evaluate the plan with plan_data"
        )
    out: dict[str | None, float] = {}
    for combo in itertools.product(*cells):
        shard = {salt: point for salt, (point, _) in zip(salts, combo, strict=True)}
        prob = float(np.prod([p for _, p in combo])) if combo else 1.0
        served: str | None = None
        for alloc in allocations:
            for split in alloc.splits:
                if all(any(a <= shard[sh.salt] < b for a, b in sh.ranges) for sh in split.shards):
                    served = split.variation_key
                    break
            if served is not None:
                break
        out[served] = out.get(served, 0.0) + prob
    return out


def flag_probabilities(
    flags: Mapping[str, Any] | str | bytes,
    flag_key: str,
    attributes: Sequence[Mapping[str, Any]],
    subject_keys: Sequence[str] | None = None,
    now: float | None = None,
) -> tuple[np.ndarray, list[dict[str | None, float]]]:
    """Each subject's probability of every variation under a flag.

    Args:
        flags: a flags (UFC) configuration, as JSON text or parsed.
        attributes: (n,) flat attribute dicts, as the flag's rules see them.
        subject_keys: (n,) keys, needed only when rules test the ``id`` attribute.
        now: epoch seconds for allocations with start/end times (default: the clock).
    Returns:
        (eligibility per subject, an (n,) object array of labels: the keys of the allocations
        whose rules the subject matches, joined by "+" ("" for none); and, per distinct label in
        first-seen order, {variation key (None = the default): probability}).
    """
    flag = _compiled_flag(flags, flag_key)
    now = time.time() if now is None else now
    live = [
        a
        for a in flag.allocations
        if (a.start_at is None or now >= a.start_at) and (a.end_at is None or now <= a.end_at)
    ]
    patterns = np.empty(len(attributes), dtype=object)
    table: dict[str, dict[str | None, float]] = {}
    for i, attrs in enumerate(attributes):
        key = "" if subject_keys is None else str(subject_keys[i])
        eligible = tuple(a for a in live if not a.rules or any(rule_matches(r, key, attrs) for r in a.rules))
        pattern = "+".join(a.key for a in eligible)
        if pattern not in table:
            table[pattern] = _shard_split_probabilities(flag, eligible) if flag.enabled else {None: 1.0}
        patterns[i] = pattern
    return patterns, [table[p] for p in dict.fromkeys(patterns.tolist())]


def flag_plan_data(
    reward: Sequence[float],
    logging_probability: Sequence[float],
    variation: Sequence[Any],
    attributes: Sequence[Mapping[str, Any]],
    flags: Mapping[str, Any] | str | bytes,
    flag_key: str,
    subject_keys: Sequence[str] | None = None,
    now: float | None = None,
) -> OffPolicyData:
    """OffPolicyData for evaluating a candidate flag on logged (variation, reward, propensity) events.

    The candidate's probability of each logged variation is computed from the flag itself
    (:func:`flag_probabilities`); subjects the flag would serve the default to make this raise,
    since their reward under the default is not in the logs.
    """
    patterns, tables = flag_probabilities(flags, flag_key, attributes, subject_keys, now)
    plan: dict[str, dict[Any, float]] = {}
    for pattern, probs in zip(dict.fromkeys(patterns.tolist()), tables, strict=True):
        default = probs.get(None, 0.0)
        if default > 1e-9:
            raise ValueError(
                f"flag {flag_key!r} serves the default to {default:.1%} of subjects eligible for allocations "
                f"{pattern.split('+') if pattern else []}; off-policy evaluation needs a variation for every subject (add a "
                "catch-all allocation)"
            )
        plan[pattern] = {k: v for k, v in probs.items() if k is not None}
    return plan_data(reward, logging_probability, patterns, variation, plan)
