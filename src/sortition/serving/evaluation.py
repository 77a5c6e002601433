"""Pure flag evaluation over a compiled :class:`~sortition.serving.model.Flag`.

``match_flag`` walks the allocations in order: skipped before ``startAt`` / after ``endAt``
(strict comparisons), then the first rule whose conditions all hold (no rules: everyone),
then the first split whose shards all contain the subject's shard (no shards: everyone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sortition.serving.model import Allocation, Flag, Rule, Split
from sortition.serving.sharding import first_uint32 as _first_uint32
from sortition.serving.sharding import MIN_VECTOR, md5

MATCH = "MATCH"
BEFORE_START_TIME = "BEFORE_START_TIME"
AFTER_END_TIME = "AFTER_END_TIME"
FAILING_RULE = "FAILING_RULE"
TRAFFIC_EXPOSURE_MISS = "TRAFFIC_EXPOSURE_MISS"
UNEVALUATED = "UNEVALUATED"

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
                        _first_uint32(md5(f"{sh.salt}-{subject_key}".encode()).digest())[0] % total
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


def match_flag_many(
    flag: Flag,
    subject_keys: list[Any],
    attributes: list[Mapping[str, Any]],
    now: float,
) -> list[tuple[Allocation, Split] | None]:
    """:func:`match_flag` for many subjects at once (same results, subject by subject).

    Walks the allocations once for the whole audience: rules per subject still pending, then
    one bulk md5 pass per shard salt over the subjects that reach it.
    """
    n = len(subject_keys)
    out: list[tuple[Allocation, Split] | None] = [None] * n
    texts = [k if k.__class__ is str else f"{k}" for k in subject_keys]
    total = flag.total_shards
    shard_of: dict[str, dict[int, int]] = {}
    pending = list(range(n))
    for alloc in flag.allocations:
        if not pending:
            break
        if alloc.start_at is not None and now < alloc.start_at:
            continue
        if alloc.end_at is not None and now > alloc.end_at:
            continue
        if alloc.rules:
            candidates = _rules_filter(alloc.rules, pending, subject_keys, attributes)
        else:
            candidates = pending
        remaining = candidates
        for split in alloc.splits:
            if not remaining:
                break
            hit = remaining
            for sh in split.shards:
                cache = shard_of.setdefault(sh.salt, {})
                missing = [i for i in hit if i not in cache]
                if missing:
                    prefix = sh.salt + "-"
                    if len(missing) >= MIN_VECTOR:  # large audiences: md5 vectorized (numpy)
                        from sortition.serving.md5_batch import shards as bulk_shards

                        bulk = bulk_shards([prefix + texts[i] for i in missing], total)
                        cache.update(zip(missing, bulk.tolist()))
                    else:
                        cache.update(zip(missing, [
                            _first_uint32(md5((prefix + texts[i]).encode()).digest())[0] % total
                            for i in missing
                        ]))
                ranges = sh.ranges
                if len(ranges) == 1:
                    start, end = ranges[0]
                    hit = [i for i in hit if start <= cache[i] < end]
                else:
                    hit = [i for i in hit if any(s <= cache[i] < e for s, e in ranges)]
                if not hit:
                    break
            if hit:
                matched = (alloc, split)
                for i in hit:
                    out[i] = matched
                taken = set(hit)
                remaining = [i for i in remaining if i not in taken]
        if remaining is not candidates:  # some subjects matched this allocation
            done = set(candidates).difference(remaining)
            pending = [i for i in pending if i not in done]
    return out


def _rules_filter(rules, pending: list[int], subject_keys: list[Any], attributes: list[Mapping[str, Any]]) -> list[int]:
    """The pending subjects that satisfy any rule, condition by condition over the audience."""
    matched: set[int] = set()
    left = pending
    for rule in rules:
        ok = left
        for c in rule.conditions:
            name, predicate = c.attribute, c.predicate
            if c.is_id:
                ok = [i for i in ok if predicate(_id_default(attributes[i].get(name), subject_keys[i]))]
            else:
                ok = [i for i in ok if predicate(attributes[i].get(name))]
            if not ok:
                break
        if ok:
            matched.update(ok)
            left = [i for i in left if i not in matched]
            if not left:
                break
    return [i for i in pending if i in matched]


def _id_default(value: Any, subject_key: Any) -> Any:
    return subject_key if value is None else value
