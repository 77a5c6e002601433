"""OpenFeature resolutions by ``serving.Client``: the one implementation behind the server's OFREP
endpoints and the in-process ``SortitionProvider`` (this module imports no openfeature-sdk).

Request body: ``{"context": {"targetingKey": SUBJECT, ATTRIBUTE: VALUE, ...}}``. A context that
carries ``actions`` (a dict ``{action: {attribute: value}}`` or a list of action keys) asks for a
bandit decision: the value is then the object ``{"variation": ..., "action": ...}``. Success:
``{key, value, reason, variant, metadata}`` (no ``value`` when the flag falls back to the
caller's default); errors: ``{key, errorCode, errorDetails}`` with 400 (bad context) or 404
(flag not found). ``metadata`` carries the served ``version`` and ``environment``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sortition.serving import Client
from sortition.serving.results import MATCH

ACTIONS_KEY = "actions"


def _metadata(environment: str, version: int) -> dict[str, Any]:
    return {"environment": environment, "version": version}


def parse_context(body: Any) -> tuple[str | None, dict[str, Any], Any]:
    """(targeting key, subject attributes, offered actions or None); ValueError for a bad body."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ValueError('the body must be a JSON object {"context": {...}}')
    context = body.get("context") or {}
    if not isinstance(context, Mapping):
        raise ValueError("context must be a JSON object")
    attributes = {k: v for k, v in context.items() if k not in ("targetingKey", ACTIONS_KEY)}
    key = context.get("targetingKey")
    if key is not None and not isinstance(key, str):
        raise ValueError(f"targetingKey must be a string, got {type(key).__name__}")
    for name, value in attributes.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(
                f"context attribute {name!r} must be a string, number, boolean or null "
                f"(got {type(value).__name__})"
            )
    actions = context.get(ACTIONS_KEY)
    if actions is not None and not isinstance(actions, (Mapping, list)):
        raise ValueError("actions must be an object {action: {attribute: value}} or a list of action keys")
    return key, attributes, actions


def evaluate(
    client: Client,
    flag_key: str,
    targeting_key: str | None,
    attributes: dict[str, Any],
    actions: Any,
    environment: str,
    version: int,
) -> tuple[int, dict[str, Any]]:
    """One flag for one context -> (HTTP status, OFREP body). Never raises."""
    cfg = client.configuration
    flag = cfg.get_flag(flag_key)
    meta = _metadata(environment, version)
    if flag is None:
        return 404, {
            "key": flag_key,
            "errorCode": "FLAG_NOT_FOUND",
            "errorDetails": f"flag {flag_key!r} is not in version {version} of {environment!r}",
        }
    if not targeting_key:
        return 400, {
            "key": flag_key,
            "errorCode": "TARGETING_KEY_MISSING",
            "errorDetails": "context.targetingKey (the subject key) is required",
        }
    if not flag.enabled:
        return 200, {"key": flag_key, "reason": "DISABLED", "variant": None, "metadata": meta}
    if actions is not None and any(link[0] == flag_key for link in cfg.bandit_links):
        result = client.get_bandit_action_details(flag_key, targeting_key, attributes, actions, "")
        details = result.details
        if details is None or details.code != MATCH:
            return 200, _default(flag_key, details, meta)
        if result.evaluation is not None:
            meta = {
                **meta,
                "banditKey": details.bandit_key or "",
                "actionProbability": result.evaluation.action_weight,
            }
        return 200, _success(
            flag_key, {"variation": result.variation, "action": result.action}, details, meta
        )
    details = client.get_assignment_details(
        flag_key, targeting_key, attributes, None, variation_type=flag.variation_type
    )
    if details.code != MATCH:
        return 200, _default(flag_key, details, meta)
    value = details.value
    if flag.variation_type == "NUMERIC" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # OFREP float flags must read as floats
    return 200, _success(flag_key, value, details, meta)


def _success(flag_key: str, value: Any, details: Any, meta: dict[str, Any]) -> dict[str, Any]:
    reason = "TARGETING_MATCH" if details.matched_rule else "SPLIT"
    return {
        "key": flag_key,
        "value": value,
        "reason": reason,
        "variant": details.variation_key,
        "metadata": meta,
    }


def _default(flag_key: str, details: Any, meta: dict[str, Any]) -> dict[str, Any]:
    code = None if details is None else details.code
    if code in ("ASSIGNMENT_ERROR", "TYPE_MISMATCH"):
        return {
            "key": flag_key,
            "reason": "ERROR",
            "variant": None,
            "errorCode": "GENERAL",
            "errorDetails": details.description,
            "metadata": meta,
        }
    return {"key": flag_key, "reason": "DEFAULT", "variant": None, "metadata": meta}


def evaluate_all(
    client: Client,
    flag_keys: tuple[str, ...],
    targeting_key: str | None,
    attributes: dict[str, Any],
    actions: Any,
    environment: str,
    version: int,
) -> list[dict]:
    """Every flag of the served version for one context (bulk evaluation)."""
    out = []
    for key in flag_keys:
        _status, body = evaluate(client, key, targeting_key, attributes, actions, environment, version)
        out.append(body)
    return out
