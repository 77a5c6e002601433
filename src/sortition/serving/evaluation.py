"""Pure flag evaluation over a compiled :class:`~sortition.serving.model.Flag`.

``match_flag`` walks the allocations in order: skipped before ``startAt`` / after ``endAt``
(strict comparisons), then the first rule whose conditions all hold (no rules: everyone),
then the first split whose shards all contain the subject's shard (no shards: everyone).
"""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import md5
from typing import Any

from sortition.serving.model import Allocation, Flag, Rule, Split

MATCH = "MATCH"
BEFORE_START_TIME = "BEFORE_START_TIME"
AFTER_END_TIME = "AFTER_END_TIME"
FAILING_RULE = "FAILING_RULE"
TRAFFIC_EXPOSURE_MISS = "TRAFFIC_EXPOSURE_MISS"
UNEVALUATED = "UNEVALUATED"

_from_bytes = int.from_bytes

# Hashed attribute names for obfuscated configurations: names repeat across requests.
_NAME_HASHES: dict[str, str] = {}
_NAME_HASHES_MAX = 100_000


def hash_attribute_names(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``{md5(name): value}`` for evaluating an obfuscated configuration."""
    cache = _NAME_HASHES
    out = {}
    for name, value in attributes.items():
        h = cache.get(name)
        if h is None:
            h = md5(name.encode()).hexdigest()
            if len(cache) >= _NAME_HASHES_MAX:
                cache.clear()
            cache[name] = h
        out[h] = value
    return out


def rule_matches(rule: Rule, subject_key: str, attributes: Mapping[str, Any]) -> bool:
    get = attributes.get
    for c in rule.conditions:
        v = get(c.attribute)
        if v is None and c.is_id:
            v = subject_key
        if not c.predicate(v):
            return False
    return True


def match_flag(
    flag: Flag,
    subject_key: str,
    attributes: Mapping[str, Any],
    now: float,
    trace: list | None = None,
) -> tuple[int, Allocation, Split, Rule | None] | None:
    """The matched (position, allocation, split, rule), or ``None``.

    When ``trace`` is a list, ``(position, allocation key, code)`` is appended for every
    allocation that did not match (positions start at 0).
    """
    get = attributes.get
    memo: dict[str, int] = {}
    total = flag.total_shards
    for i, alloc in enumerate(flag.allocations):
        if alloc.start_at is not None and now < alloc.start_at:
            if trace is not None:
                trace.append((i, alloc.key, BEFORE_START_TIME))
            continue
        if alloc.end_at is not None and now > alloc.end_at:
            if trace is not None:
                trace.append((i, alloc.key, AFTER_END_TIME))
            continue
        rule = None
        if alloc.rules:
            for r in alloc.rules:
                for c in r.conditions:
                    v = get(c.attribute)
                    if v is None and c.is_id:
                        v = subject_key
                    if not c.predicate(v):
                        break
                else:
                    rule = r
                    break
            else:
                if trace is not None:
                    trace.append((i, alloc.key, FAILING_RULE))
                continue
        for split in alloc.splits:
            for sh in split.shards:
                s = memo.get(sh.salt)
                if s is None:
                    s = memo[sh.salt] = (
                        _from_bytes(md5(f"{sh.salt}-{subject_key}".encode()).digest()[:4], "big") % total
                    )
                for start, end in sh.ranges:
                    if start <= s < end:
                        break
                else:
                    break
            else:
                return i, alloc, split, rule
        if trace is not None:
            trace.append((i, alloc.key, TRAFFIC_EXPOSURE_MISS))
    return None
