"""Eppo's obfuscated ("CLIENT") configuration format: decode it, evaluate it, and make it.

Hashed (lowercase md5 hex of UTF-8, no salt): flag keys, condition attributes and operators,
ONE_OF/NOT_ONE_OF members and IS_NULL values. Base64 (standard, padded) of the plain string:
variation keys and values, allocation keys, salts, other condition values, startAt/endAt,
extraLogging keys and values. Hashes cannot be reversed, so requests hash what they compare.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Mapping
from typing import Any

from sortition.serving.conditions import OPERATORS, Predicate, compile_condition, js_string
from sortition.serving.sharding import md5
from sortition.serving.validation import ConfigurationError, show


def md5_hex(text: str) -> str:
    try:
        return md5(text.encode()).hexdigest()
    except UnicodeEncodeError:  # a lone surrogate: hash its bytes, never raise
        return md5(text.encode("utf-8", "surrogatepass")).hexdigest()


def b64encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def b64decode(text: Any, path: str) -> str:
    if not isinstance(text, str):
        raise ConfigurationError(path, f"expected a base64 string, got {show(text)}")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ConfigurationError(path, f"not valid base64 of UTF-8 text ({exc}): {show(text)}") from None


OPERATOR_BY_HASH = {md5_hex(op): op for op in OPERATORS}
_TRUE, _FALSE = md5_hex("true"), md5_hex("false")


def decode_operator(value: Any, path: str) -> str:
    if isinstance(value, str) and value in OPERATOR_BY_HASH:
        return OPERATOR_BY_HASH[value]
    raise ConfigurationError(path, f"unknown (obfuscated) operator {show(value)}; "
                             f"expected md5 of one of {', '.join(OPERATORS)}")


def compile_obfuscated_condition(operator: str, value: Any, path: str) -> tuple[Any, Predicate]:
    """(decoded value, predicate over the plain attribute value) for an obfuscated condition."""
    if operator in ("ONE_OF", "NOT_ONE_OF"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(path, f"{operator} needs a list of md5 hex strings, got {show(value)}")
        members = frozenset(value)
        want = operator == "ONE_OF"
        return value, lambda attr: attr is not None and (md5_hex(js_string(attr)) in members) == want
    if operator == "IS_NULL":
        if value in (_TRUE, _FALSE):
            decoded = value == _TRUE
        elif isinstance(value, bool):
            decoded = value
        else:
            raise ConfigurationError(path, f"IS_NULL needs md5('true') or md5('false'), got {show(value)}")
        return decoded, compile_condition(operator, decoded)
    decoded = b64decode(value, path)
    return decoded, compile_condition(operator, decoded)


def obfuscate_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The CLIENT-format twin of a plain (SERVER) flags configuration."""
    out = copy.deepcopy(dict(flags))
    out["format"] = "CLIENT"
    new_flags = {}
    for key, flag in flags.get("flags", {}).items():
        f = copy.deepcopy(flag)
        f["key"] = md5_hex(key)
        f["variations"] = {
            b64encode(vk): {"key": b64encode(v["key"]), "value": b64encode(js_string(v["value"]))}
            for vk, v in flag.get("variations", {}).items()
        }
        for alloc in f.get("allocations", []):
            alloc["key"] = b64encode(alloc["key"])
            for field in ("startAt", "endAt"):
                if alloc.get(field) is not None:
                    alloc[field] = b64encode(alloc[field])
            for rule in alloc.get("rules") or []:
                for cond in rule.get("conditions", []):
                    op = cond["operator"]
                    cond["attribute"] = md5_hex(cond["attribute"])
                    cond["operator"] = md5_hex(op)
                    if op in ("ONE_OF", "NOT_ONE_OF"):
                        cond["value"] = [md5_hex(js_string(v)) for v in cond["value"]]
                    elif op == "IS_NULL":
                        cond["value"] = md5_hex(js_string(cond["value"]))
                    else:
                        cond["value"] = b64encode(js_string(cond["value"]))
            for split in alloc.get("splits", []):
                split["variationKey"] = b64encode(split["variationKey"])
                for shard in split.get("shards", []):
                    shard["salt"] = b64encode(shard["salt"])
                if split.get("extraLogging"):
                    split["extraLogging"] = {
                        b64encode(k): b64encode(js_string(v)) for k, v in split["extraLogging"].items()
                    }
        new_flags[md5_hex(key)] = f
    out["flags"] = new_flags
    return out


def obfuscate_json(flags_json: str | bytes) -> str:
    return json.dumps(obfuscate_flags(json.loads(flags_json)))
