"""Bandit-models files and flag links for the one ``BanditModel`` (``sortition.serving.bandits``).

``BanditModel.to_json()`` writes one entry of the ``bandits`` object of a bandit-models file;
:func:`bandit_models_json` writes the whole file and :func:`link_bandit` adds the
``banditReferences`` that tie a flag's variations to the model in a flags (UFC) file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from sortition.serving.bandits import BanditModel, action_coefficients_json, parse_bandit_models
from sortition.serving.events import now_rfc3339 as _utc_now
from sortition.serving.sharding import TOTAL_SHARDS

__all__ = ["BanditModel", "action_coefficients_json", "bandit_flags_json", "bandit_models_json", "link_bandit",
           "load_bandit_models"]


def bandit_models_json(
    models: Iterable[BanditModel], environment: str = "Production", updated_at: str | None = None
) -> dict[str, Any]:
    """A whole bandit-models-v1 file: ``{"updatedAt", "environment", "bandits": {key: entry}}``."""
    bandits: dict[str, Any] = {}
    for m in models:
        if m.bandit_key in bandits:
            raise ValueError(f"two models share banditKey {m.bandit_key!r}; keys must be unique")
        bandits[m.bandit_key] = m.to_json()
    return {
        "updatedAt": updated_at or _utc_now(),
        "environment": {"name": environment},
        "bandits": bandits,
    }


def load_bandit_models(document: Mapping[str, Any]) -> dict[str, BanditModel]:
    """Every model of a bandit-models-v1 file (parsed from JSON), by bandit key.

    Raises ValueError naming the bad field, or saying that the document is a flags file."""
    if isinstance(document, Mapping) and "flags" in document:
        raise ValueError("it is a flags (UFC) file, with 'flags'; a bandit-models-v1 file is "
                         "{\"bandits\": {banditKey: {modelVersion, modelData}}}")
    if isinstance(document, Mapping) and "bandits" not in document:
        raise ValueError("it has no 'bandits' object")
    return parse_bandit_models(document)


def link_bandit(flags: Mapping[str, Any], model: BanditModel, flag_keys: Iterable[str] | None = None) -> dict:
    """A copy of a flags (UFC) file whose ``banditReferences`` (and ``bandits``) route to ``model``.

    Every allocation of the given flags (all flags when None) with a split on a variation whose
    value is the model's bandit key gets a flag-variation link; the reference carries the model's
    version, as Eppo's SDKs expect. Raises ValueError when no variation routes to the bandit.
    """
    out = copy.deepcopy(dict(flags))
    all_flags = out.get("flags", {})
    keys = list(all_flags) if flag_keys is None else list(flag_keys)
    links: list[dict[str, Any]] = []
    for fk in keys:
        if fk not in all_flags:
            raise ValueError(f"flag {fk!r} is not in the flags file; known flags: {sorted(all_flags)[:10]}")
        flag = all_flags[fk]
        variations = {
            vk: v for vk, v in flag.get("variations", {}).items() if v.get("value") == model.bandit_key
        }
        for alloc in flag.get("allocations", []):
            for split in alloc.get("splits", []):
                vk = split.get("variationKey")
                if vk in variations:
                    link = {
                        "key": model.bandit_key,
                        "flagKey": fk,
                        "allocationKey": alloc["key"],
                        "variationKey": vk,
                        "variationValue": model.bandit_key,
                    }
                    if link not in links:
                        links.append(link)
    if not links:
        values = sorted({
            v["value"] for fk in keys for v in all_flags[fk].get("variations", {}).values()
            if isinstance(v.get("value"), str)
        })
        raise ValueError(
            f"no variation with value {model.bandit_key!r} is split to in flags {keys[:10]}; add a "
            "variation whose value is the bandit key and allocate traffic to it"
            + (f" (their string variation values: {values[:10]})" if values else "")
        )
    refs = out.setdefault("banditReferences", {})
    refs[model.bandit_key] = {"modelVersion": model.model_version, "flagVariations": links}
    # Eppo's server SDKs (Rust core 10) route by the older per-bandit list, without allocation
    # keys; both are written so every SDK generation finds the bandit.
    legacy: list[dict[str, Any]] = []
    for link in links:
        entry = {k: link[k] for k in ("key", "flagKey", "variationKey", "variationValue")}
        if entry not in legacy:
            legacy.append(entry)
    out.setdefault("bandits", {})[model.bandit_key] = legacy
    return out


def bandit_flags_json(model: BanditModel, flag_key: str, environment: str = "Production") -> dict[str, Any]:
    """A flags (UFC) file with one flag that sends all traffic to ``model``'s bandit, linked by
    ``banditReferences``: the smallest configuration that serves a trained model."""
    flags = {
        "createdAt": _utc_now(),
        "format": "SERVER",
        "environment": {"name": environment},
        "flags": {
            flag_key: {
                "key": flag_key,
                "enabled": True,
                "variationType": "STRING",
                "variations": {model.bandit_key: {"key": model.bandit_key, "value": model.bandit_key}},
                "allocations": [
                    {
                        "key": "all-traffic",
                        "splits": [{"variationKey": model.bandit_key, "shards": []}],
                        "doLog": True,
                    }
                ],
                "totalShards": TOTAL_SHARDS,
            }
        },
    }
    return link_bandit(flags, model, [flag_key])
