"""``Configuration``: an immutable, precompiled snapshot of flags and bandit models.

Everything is parsed and compiled here, once: conditions into predicates, timestamps into
epoch seconds, variation values into typed values, bandit links into a lookup table. A bad
field raises :class:`~sortition.serving.validation.ConfigurationError` (a ``ValueError``) naming
its JSON path; nothing half-built escapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from sortition.serving.bandits import BanditModel, parse_bandit_models
from sortition.serving.conditions import OPERATORS, compile_condition, js_string, to_number
from sortition.serving.model import (
    VARIATION_TYPES,
    Allocation,
    BanditLink,
    Condition,
    Flag,
    Rule,
    Shard,
    Split,
    Variation,
)
from sortition.serving.sharding import TOTAL_SHARDS, salted
from sortition.serving.obfuscation import b64decode, compile_obfuscated_condition, decode_operator, md5_hex
from sortition.serving.validation import (
    MAX_DEPTH,
    ConfigurationError,
    arr,
    check_depth,
    boolean,
    load_document,
    obj,
    show,
    string,
    whole,
)

_ID_HASH = md5_hex("id")
_KEY_HASHES: dict[str, str] = {}  # plain flag key -> md5 hex, for obfuscated configurations


def _timestamp(value: Any, path: str) -> float | None:
    """Epoch seconds of an ISO 8601 timestamp; one without a zone is UTC (never the machine's)."""
    if value is None:
        return None
    text = string(value, path)
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        raise ConfigurationError(path, f"expected an ISO 8601 timestamp, got {show(value)}") from None


def _typed_value(variation_type: str, raw: Any, obfuscated: bool, path: str) -> tuple[Any, Any, str | None]:
    """(raw as reported, typed value, error) for one variation value."""
    if obfuscated:  # base64 of String(value): recover the JSON-typed raw value first
        if variation_type in ("INTEGER", "NUMERIC"):
            number = to_number(raw)
            raw = raw if number is None else (int(number) if number.is_integer() and "." not in raw else number)
        elif variation_type == "BOOLEAN" and raw in ("true", "false"):
            raw = raw == "true"
    if variation_type == "STRING":
        ok = isinstance(raw, str)
        value = raw
    elif variation_type == "BOOLEAN":
        ok = isinstance(raw, bool)
        value = raw
    elif variation_type == "INTEGER":
        ok = _finite(raw) and float(raw).is_integer()
        value = int(raw) if ok else None
    elif variation_type == "NUMERIC":
        ok = _finite(raw)
        value = float(raw) if ok else None
    else:  # JSON: a JSON string, returned parsed
        value = None
        if isinstance(raw, str):
            try:
                value, ok = json.loads(raw), True
            except json.JSONDecodeError:
                ok = False
            except RecursionError:
                raise ConfigurationError(path, f"JSON value nested deeper than {MAX_DEPTH} levels") from None
            if ok:
                check_depth(value, path)
        else:
            ok = isinstance(raw, (dict, list))
            value = raw
    if ok:
        return raw, value, None
    shown = js_string(raw) if not isinstance(raw, (dict, list)) else json.dumps(raw)
    return raw, None, f"is configured for type {variation_type}, but is set to incompatible value ({shown})"


def _finite(raw: Any) -> bool:
    """A finite JSON number (bool excluded; an int beyond float range is not finite)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return False
    try:
        return math.isfinite(raw)
    except OverflowError:
        return False


def _parse_flag(key: str, f: Any, obfuscated: bool) -> Flag:
    p = f"flags.{key}"
    f = obj(f, p)
    variation_type = string(f.get("variationType"), f"{p}.variationType")
    if variation_type not in VARIATION_TYPES:
        raise ConfigurationError(f"{p}.variationType",
                                 f"{variation_type!r} is not one of {', '.join(VARIATION_TYPES)}")
    total_shards = whole(f.get("totalShards", TOTAL_SHARDS), f"{p}.totalShards")
    if total_shards <= 0:
        raise ConfigurationError(f"{p}.totalShards", f"must be positive, got {total_shards}")
    variations = {}
    for vk, v in obj(f.get("variations", {}), f"{p}.variations").items():
        vp = f"{p}.variations.{vk}"
        v = obj(v, vp)
        vkey = string(v.get("key", vk), f"{vp}.key")
        if "value" not in v:
            raise ConfigurationError(f"{vp}.value", "missing")
        raw = v["value"]
        if obfuscated:
            vkey = b64decode(vkey, f"{vp}.key")
            raw = b64decode(raw, f"{vp}.value")
        raw, value, error = _typed_value(variation_type, raw, obfuscated, f"{vp}.value")
        variations[vkey] = Variation(vkey, raw, value, error)
    salts: dict[str, int] = {}  # salt -> index, filled as the splits are read
    allocations = tuple(
        _parse_allocation(a, f"{p}.allocations[{i}]", obfuscated, i, salts, variations)
        for i, a in enumerate(arr(f.get("allocations", []), f"{p}.allocations"))
    )
    return Flag(
        key=key,
        enabled=boolean(f.get("enabled", False), f"{p}.enabled"),
        variation_type=variation_type,
        variations=MappingProxyType(variations),
        allocations=allocations,
        total_shards=total_shards,
        timed=any(a.start_at is not None or a.end_at is not None for a in allocations),
        salts=tuple(salts),
        hashers=tuple(salted(f"{salt}-") for salt in salts),
    )


def _parse_allocation(a: Any, p: str, obfuscated: bool, position: int, salts: dict[str, int],
                      variations: Mapping[str, Variation]) -> Allocation:
    a = obj(a, p)
    key = string(a.get("key"), f"{p}.key")
    start, end = a.get("startAt"), a.get("endAt")
    if obfuscated:
        key = b64decode(key, f"{p}.key")
        start = None if start is None else b64decode(start, f"{p}.startAt")
        end = None if end is None else b64decode(end, f"{p}.endAt")
    rules = tuple(
        _parse_rule(r, f"{p}.rules[{i}]", obfuscated) for i, r in enumerate(arr(a.get("rules"), f"{p}.rules", null_ok=True))
    )
    splits = tuple(
        _parse_split(s, f"{p}.splits[{i}]", obfuscated, salts, variations)
        for i, s in enumerate(arr(a.get("splits", []), f"{p}.splits"))
    )
    return Allocation(
        key=key,
        rules=rules,
        start_at=_timestamp(start, f"{p}.startAt"),
        end_at=_timestamp(end, f"{p}.endAt"),
        splits=splits,
        do_log=boolean(a.get("doLog", True), f"{p}.doLog"),
        describes_traffic=len(splits) > 1 or any(len(s.shards) > 1 for s in splits),
        position=position,
    )


def _parse_rule(r: Any, p: str, obfuscated: bool) -> Rule:
    r = obj(r, p)
    conditions = []
    for i, c in enumerate(arr(r.get("conditions", []), f"{p}.conditions")):
        cp = f"{p}.conditions[{i}]"
        c = obj(c, cp)
        attribute = string(c.get("attribute"), f"{cp}.attribute")
        value = c.get("value")
        if obfuscated:
            operator = decode_operator(c.get("operator"), f"{cp}.operator")
            try:
                _, predicate = compile_obfuscated_condition(operator, value, f"{cp}.value")
            except ConfigurationError:
                raise
            except ValueError as exc:
                raise ConfigurationError(f"{cp}.value", str(exc)) from None
            is_id = attribute == _ID_HASH
        else:
            operator = c.get("operator")
            if operator.__class__ is not str or operator not in OPERATORS:
                raise ConfigurationError(f"{cp}.operator",
                                         f"unknown operator {show(operator)}; expected one of {', '.join(OPERATORS)}")
            try:
                predicate = compile_condition(operator, value)
            except ValueError as exc:
                raise ConfigurationError(f"{cp}.value", str(exc)) from None
            is_id = attribute == "id"
        conditions.append(Condition(attribute, operator, value, predicate, is_id))
    return Rule(tuple(conditions), r)


def _parse_split(s: Any, p: str, obfuscated: bool, salts: dict[str, int],
                 variations: Mapping[str, Variation]) -> Split:
    s = obj(s, p)
    variation_key = string(s.get("variationKey"), f"{p}.variationKey")
    if obfuscated:
        variation_key = b64decode(variation_key, f"{p}.variationKey")
    shards = []
    for i, sh in enumerate(arr(s.get("shards", []), f"{p}.shards")):
        sp = f"{p}.shards[{i}]"
        sh = obj(sh, sp)
        salt = string(sh.get("salt"), f"{sp}.salt")
        if obfuscated:
            salt = b64decode(salt, f"{sp}.salt")
        ranges = []
        for j, rg in enumerate(arr(sh.get("ranges", []), f"{sp}.ranges")):
            rp = f"{sp}.ranges[{j}]"
            rg = obj(rg, rp)
            ranges.append((whole(rg.get("start"), f"{rp}.start"), whole(rg.get("end"), f"{rp}.end")))
        shards.append(Shard(salt, tuple(ranges), salts.setdefault(salt, len(salts))))
    extra = obj(s.get("extraLogging") or {}, f"{p}.extraLogging")
    if obfuscated:
        extra = {
            b64decode(k, f"{p}.extraLogging key"): b64decode(v, f"{p}.extraLogging.{k}") for k, v in extra.items()
        }
    else:  # Eppo's format: string to string
        extra = {k: string(v, f"{p}.extraLogging.{k}") for k, v in extra.items()}
    return Split(variation_key, tuple(shards), MappingProxyType(extra), variations.get(variation_key))


def _parse_links(data: Mapping[str, Any]) -> dict[tuple[str, str], BanditLink]:
    links: dict[tuple[str, str], BanditLink] = {}
    refs = data.get("banditReferences")
    if refs is not None:
        for bandit_key, ref in obj(refs, "banditReferences").items():
            p = f"banditReferences.{bandit_key}"
            ref = obj(ref, p)
            version = ref.get("modelVersion")
            for i, fv in enumerate(arr(ref.get("flagVariations", []), f"{p}.flagVariations")):
                fp = f"{p}.flagVariations[{i}]"
                fv = obj(fv, fp)
                link = BanditLink(
                    bandit_key=string(fv.get("key", bandit_key), f"{fp}.key"),
                    flag_key=string(fv.get("flagKey"), f"{fp}.flagKey"),
                    variation_key=_scalar_string(fv.get("variationKey"), f"{fp}.variationKey"),
                    variation_value=_scalar_string(fv.get("variationValue"), f"{fp}.variationValue"),
                    model_version=None if version is None else _scalar_string(version, f"{p}.modelVersion"),
                )
                links[(link.flag_key, link.variation_value)] = link
        return links
    old = data.get("bandits")
    if old is not None:  # the older field: {banditKey: [{key, flagKey, variationKey, variationValue}]}
        for bandit_key, items in obj(old, "bandits").items():
            for i, fv in enumerate(arr(items, f"bandits.{bandit_key}")):
                fp = f"bandits.{bandit_key}[{i}]"
                fv = obj(fv, fp)
                link = BanditLink(
                    bandit_key=string(fv.get("key", bandit_key), f"{fp}.key"),
                    flag_key=string(fv.get("flagKey"), f"{fp}.flagKey"),
                    variation_key=_scalar_string(fv.get("variationKey"), f"{fp}.variationKey"),
                    variation_value=_scalar_string(fv.get("variationValue"), f"{fp}.variationValue"),
                    model_version=None,
                )
                links[(link.flag_key, link.variation_value)] = link
    return links


def _scalar_string(value: Any, path: str) -> str:
    """A string, or a number/boolean stringified the JavaScript way (link values, versions)."""
    if value is None or isinstance(value, (Mapping, list)):
        raise ConfigurationError(path, f"expected a string, got {show(value)}")
    return string(value, path) if not isinstance(value, (bool, int, float)) else js_string(value)


def _optional_string(value: Any, path: str) -> str | None:
    return None if value is None else string(value, path)


def _document(data: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(data, (str, bytes, bytearray, Mapping)):
        raise ConfigurationError(path, f"expected the JSON text or an object, got {show(data)}")
    return load_document(data, path)


def _unwrap(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any]:
    """The wire wrapper ``{version, config: {response}, bandits: {response}}`` -> (flags, bandits)."""
    config = obj(data["config"], "config")
    if "response" not in config:
        raise ConfigurationError("config.response", "missing (expected the flags JSON as a string)")
    flags = _document(config["response"], "config.response")
    bandits = data.get("bandits")
    if bandits is not None:
        bandits = obj(bandits, "bandits")
        if "response" not in bandits:
            raise ConfigurationError("bandits.response", "missing (expected the bandit models JSON as a string)")
        bandits = _document(bandits["response"], "bandits.response")
    return flags, bandits


@dataclass(frozen=True, repr=False)
class Configuration:
    """Flags and bandit models, parsed and compiled once; never mutated (swap it whole).

    Build with :meth:`from_json`. ``flags`` maps the stored flag key (md5 hex when
    ``obfuscated``) to a compiled :class:`~sortition.serving.model.Flag`.
    """

    flags: Mapping[str, Flag]
    bandits: Mapping[str, BanditModel] = field(default_factory=dict)
    bandit_links: Mapping[tuple[str, str], BanditLink] = field(default_factory=dict)
    obfuscated: bool = False
    environment: str | None = None
    created_at: str | None = None

    @classmethod
    def from_json(
        cls,
        flags: str | bytes | Mapping[str, Any],
        bandits: str | bytes | Mapping[str, Any] | None = None,
    ) -> Configuration:
        """Parse a UFC flags configuration (plain SERVER or obfuscated CLIENT format, or the wire
        wrapper ``{version, config: {response}, bandits: {response}}``) and optional bandit models
        (``{"bandits": {key: {banditKey, modelVersion, modelData}}}``).

        Raises:
            ConfigurationError: (a ``ValueError``) malformed JSON, a bad field (naming its JSON
                path), a document over the size or depth limit (``sortition.serving.validation``).
            TypeError: ``flags``/``bandits`` of the wrong Python type.
        """
        data = load_document(flags, "flags")
        if "config" in data and "flags" not in data:
            data, wrapped_bandits = _unwrap(data)
            if bandits is None:
                bandits = wrapped_bandits
        fmt = data.get("format", "SERVER")
        if fmt not in ("SERVER", "CLIENT"):
            raise ConfigurationError("format", f"expected 'SERVER' or 'CLIENT', got {show(fmt)}")
        obfuscated = fmt == "CLIENT"
        if "flags" not in data:
            raise ConfigurationError("flags", "missing (expected {'flags': {flagKey: {...}}})")
        raw_flags = obj(data["flags"], "flags")
        compiled = {key: _parse_flag(key, f, obfuscated) for key, f in raw_flags.items()}
        links = _parse_links(data)
        models = {} if bandits is None else parse_bandit_models(load_document(bandits, "bandits"))
        env = data.get("environment")
        return cls(
            flags=MappingProxyType(compiled),
            bandits=MappingProxyType(models),
            bandit_links=MappingProxyType(links),
            obfuscated=obfuscated,
            environment=_optional_string(env.get("name") if isinstance(env, Mapping) else None, "environment.name"),
            created_at=_optional_string(data.get("createdAt"), "createdAt"),
        )

    def __post_init__(self) -> None:
        """Refuse a Configuration built directly from anything but compiled parts."""
        flags = obj(self.flags, "flags")
        for key, flag in flags.items():
            if not isinstance(flag, Flag):
                raise ConfigurationError(f"flags.{key}", f"expected a compiled Flag (build configurations with "
                                         f"Configuration.from_json), got {show(flag)}")
        for key, model in obj(self.bandits, "bandits").items():
            if not isinstance(model, BanditModel):
                raise ConfigurationError(f"bandits.{key}", f"expected a BanditModel, got {show(model)}")
        links = self.bandit_links
        if not isinstance(links, Mapping) or not all(isinstance(v, BanditLink) for v in links.values()):
            raise ConfigurationError("bandit_links", "expected {(flag_key, variation_value): BanditLink}")
        for name in ("flags", "bandits", "bandit_links"):  # immutable, even when given a plain dict
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    def __repr__(self) -> str:
        fmt = "CLIENT" if self.obfuscated else "SERVER"
        return (f"Configuration({len(self.flags)} flags, {len(self.bandits)} bandit models, "
                f"{len(self.bandit_links)} bandit links, format={fmt}, environment={self.environment!r})")

    def get_flag(self, flag_key: str) -> Flag | None:
        """The compiled flag for a plain flag key (hashed here when obfuscated)."""
        if not self.obfuscated:
            return self.flags.get(flag_key)
        if flag_key.__class__ is not str:
            return None
        hashed = _KEY_HASHES.get(flag_key)
        if hashed is None:
            hashed = md5_hex(flag_key)
            if len(_KEY_HASHES) >= 100_000:  # bounded: flag keys are few, but callers may send anything
                _KEY_HASHES.clear()
            _KEY_HASHES[flag_key] = hashed
        return self.flags.get(hashed)

    def flag_keys(self) -> list[str]:
        """Stored flag keys (md5 hex when obfuscated)."""
        return list(self.flags)

    def bandit_link(self, flag_key: str, variation_value: Any) -> BanditLink | None:
        value = variation_value if isinstance(variation_value, str) else js_string(variation_value)
        link = self.bandit_links.get((flag_key, value))
        if link is None and self.obfuscated:
            link = self.bandit_links.get((md5_hex(flag_key), value))
        return link
