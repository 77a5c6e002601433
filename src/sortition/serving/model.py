"""The compiled model: the immutable form of a flag configuration, built once per ``Configuration``.

Every kind of call evaluates these objects (single, details, batch, and the columnar calls of
``sortition.serving.columnar``); nothing is re-parsed per request. Shape (docs/serving.md,
"Compiled model"):

``Flag`` -> ``allocations`` (in order, each with its ``position``) -> ``rules`` (any one must hold;
none: everyone) -> ``conditions`` (all must hold; each a compiled ``predicate``) and ``splits``
(the first whose shards all contain the subject's shard) -> ``shards`` (``salt_index`` into
``Flag.salts`` / ``Flag.hashers``; ``ranges`` ``[start, end)``, also as ``starts`` / ``ends``
int64 arrays) and the resolved ``variation``.
"""

from __future__ import annotations

from array import array
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
    predicate: Predicate  # attribute value (None = missing) -> bool; never raises
    is_id: bool  # the attribute is ``id``: missing means the subject key


@dataclass(frozen=True, slots=True)
class Rule:
    conditions: tuple[Condition, ...]
    raw: Mapping[str, Any]  # the rule as in the configuration (reported as matchedRule)


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard test of a split: the subject's shard under ``salt`` lies in one of ``ranges``."""

    salt: str
    ranges: tuple[tuple[int, int], ...]  # [start, end)
    salt_index: int = 0  # position of ``salt`` in the flag's ``salts`` (one hash per salt per subject)
    starts: array | None = None  # the ranges as int64 arrays (np.frombuffer(starts, np.int64)); derived
    ends: array | None = None

    def __post_init__(self) -> None:
        if self.starts is None:
            object.__setattr__(self, "starts", array("q", [start for start, _ in self.ranges]))
        if self.ends is None:
            object.__setattr__(self, "ends", array("q", [end for _, end in self.ranges]))


@dataclass(frozen=True, slots=True)
class Variation:
    key: str
    raw: Any  # the value as configured (reported as variationValue when it does not fit)
    value: Any  # the typed value (JSON: the parsed object); None when ``error`` is set
    error: str | None  # why the value does not fit the flag's variationType


@dataclass(frozen=True, slots=True)
class Split:
    variation_key: str
    shards: tuple[Shard, ...]
    extra_logging: Mapping[str, str]
    variation: Variation | None = None  # resolved at compile time; None: not among the flag's variations


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
    position: int = 0  # index in the flag's allocations (details report position + 1)


@dataclass(frozen=True, slots=True)
class Flag:
    key: str
    enabled: bool
    variation_type: str
    variations: Mapping[str, Variation]
    allocations: tuple[Allocation, ...]
    total_shards: int
    timed: bool = False  # some allocation has startAt/endAt (only then is the clock read)
    salts: tuple[str, ...] = ()  # distinct shard salts, in first-use order
    hashers: tuple[Any, ...] = ()  # per salt, md5 pre-fed f"{salt}-" (sharding.salted)


@dataclass(frozen=True, slots=True)
class BanditLink:
    bandit_key: str
    flag_key: str
    variation_key: str
    variation_value: str
    model_version: str | None
