"""The compiled, immutable form of a flag configuration (built once by ``Configuration``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sortition.serving.conditions import Predicate

VARIATION_TYPES = ("STRING", "INTEGER", "NUMERIC", "BOOLEAN", "JSON")


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled condition. ``attribute`` is the name as stored (md5 hex when obfuscated)."""

    attribute: str
    operator: str
    value: Any
    predicate: Predicate
    is_id: bool  # the attribute is ``id``: missing means the subject key


@dataclass(frozen=True, slots=True)
class Rule:
    conditions: tuple[Condition, ...]
    raw: Mapping[str, Any]  # the rule as in the configuration (reported as matchedRule)


@dataclass(frozen=True, slots=True)
class Shard:
    salt: str
    ranges: tuple[tuple[int, int], ...]  # [start, end)


@dataclass(frozen=True, slots=True)
class Split:
    variation_key: str
    shards: tuple[Shard, ...]
    extra_logging: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Allocation:
    key: str
    rules: tuple[Rule, ...]
    start_at: float | None  # epoch seconds
    end_at: float | None
    splits: tuple[Split, ...]
    do_log: bool
    # Which description template a MATCH uses: several splits or a split with several shards.
    describes_traffic: bool


@dataclass(frozen=True, slots=True)
class Variation:
    key: str
    raw: Any  # the value as configured (reported as variationValue when it does not fit)
    value: Any  # the typed value (JSON: the parsed object); None when ``error`` is set
    error: str | None  # why the value does not fit the flag's variationType


@dataclass(frozen=True, slots=True)
class Flag:
    key: str
    enabled: bool
    variation_type: str
    variations: Mapping[str, Variation]
    allocations: tuple[Allocation, ...]
    total_shards: int
    timed: bool = False  # some allocation has startAt/endAt (only then is the clock read)


@dataclass(frozen=True, slots=True)
class BanditLink:
    bandit_key: str
    flag_key: str
    variation_key: str
    variation_value: str
    model_version: str | None
