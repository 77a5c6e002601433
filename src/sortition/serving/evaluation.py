"""Pure flag evaluation over a compiled :class:`~sortition.serving.model.Flag`: the one rule walk
and the one allocation walk, used by every kind of call.

``match_flag`` walks the allocations in order: skipped before ``startAt`` / after ``endAt``
(strict comparisons), then the first rule whose conditions all hold (no rules: everyone),
then the first split whose shards all contain the subject's shard (no shards: everyone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sortition.serving.model import Allocation, Flag, Rule, Split
from sortition.serving.sharding import md5, shard

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
    """``{md5(name): value}`` for evaluating an obfuscated configuration.

    A name that is not a string is left out: no configured attribute can equal it, exactly as a
    plain configuration's lookups by string never find it.
    """
    cache = _NAME_HASHES
    out = {}
    for name, value in attributes.items():
        h = cache.get(name) if name.__class__ is str else None
        if h is None:
            if not isinstance(name, str):
                continue
            try:
                h = md5(name.encode()).hexdigest()
            except UnicodeEncodeError:  # a lone surrogate: hash its bytes, as obfuscation does
                h = md5(name.encode("utf-8", "surrogatepass")).hexdigest()
            if len(cache) >= _NAME_HASHES_MAX:
                cache.clear()
            cache[name] = h
        out[h] = value
    return out


def rule_matches(rule: Rule, subject_key: str, attributes: Mapping[str, Any]) -> bool:
    """Whether every condition of ``rule`` holds (see :func:`first_matching_rule`)."""
    return first_matching_rule((rule,), subject_key, attributes) is not None


def first_matching_rule(rules: Sequence[Rule], subject_key: str, attributes: Mapping[str, Any]) -> Rule | None:
    """The one rule walk: the first rule whose conditions all hold (``id`` missing = the subject
    key), or ``None``. A value that makes a predicate raise (a hostile ``__str__``) fails its
    condition; nothing else changes."""
    get = attributes.get
    for rule in rules:
        try:
            for c in rule.conditions:
                v = get(c.attribute)
                if v is None and c.is_id:
                    v = subject_key
                if not c.predicate(v):
                    break
            else:
                return rule
        except Exception:  # noqa: BLE001 - a bad attribute value affects only its own condition
            continue
    return None


def match_flag(
    flag: Flag,
    subject_key: str,
    attributes: Mapping[str, Any],
    now: float,
    trace: list | None = None,
    shards: Sequence[int] | None = None,
) -> tuple[int, Allocation, Split, Rule | None] | None:
    """The matched (position, allocation, split, rule), or ``None``.

    Args:
        shards: the subject's shard under each of ``flag.salts`` when already computed (a batch
            hashes all subjects at once with numpy); ``None``: hashed here, once per salt reached.
        trace: when a list, ``(position, allocation key, code)`` is appended for every
            allocation that did not match (positions start at 0).
    """
    memo = shards if shards is not None else [-1] * len(flag.salts)
    total = flag.total_shards
    hashers = flag.hashers
    for alloc in flag.allocations:
        if alloc.start_at is not None and now < alloc.start_at:
            if trace is not None:
                trace.append((alloc.position, alloc.key, BEFORE_START_TIME))
            continue
        if alloc.end_at is not None and now > alloc.end_at:
            if trace is not None:
                trace.append((alloc.position, alloc.key, AFTER_END_TIME))
            continue
        rule = None
        if alloc.rules:
            rule = first_matching_rule(alloc.rules, subject_key, attributes)
            if rule is None:
                if trace is not None:
                    trace.append((alloc.position, alloc.key, FAILING_RULE))
                continue
        for split in alloc.splits:
            for sh in split.shards:
                i = sh.salt_index
                s = memo[i]
                if s < 0:
                    s = memo[i] = shard(subject_key, total, hashers[i])
                for start, end in sh.ranges:
                    if start <= s < end:
                        break
                else:
                    break
            else:
                return alloc.position, alloc, split, rule
        if trace is not None:
            trace.append((alloc.position, alloc.key, TRAFFIC_EXPOSURE_MISS))
    return None
