"""BanditModel: the per-action linear models in Eppo's ``bandit-models-v1`` format.

``BanditModel.to_json()`` writes one entry of the ``bandits`` object of a bandit-models file;
:func:`bandit_models_json` writes the whole file and :func:`link_bandit` adds the
``banditReferences`` that tie a flag's variations to the model in a flags (UFC) file.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sortition.serving.bandits import ActionCoefficients, CategoricalTerm, NumericTerm, parse_bandit_model
from sortition.serving.bandits import BanditModel as ServingModel


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _numeric_json(terms: tuple[NumericTerm, ...]) -> list[dict[str, Any]]:
    return [{"attributeKey": k, "coefficient": c, "missingValueCoefficient": m} for k, c, m in terms]


def _categorical_json(terms: tuple[CategoricalTerm, ...]) -> list[dict[str, Any]]:
    return [
        {"attributeKey": k, "valueCoefficients": dict(v), "missingValueCoefficient": m} for k, v, m in terms
    ]


def action_coefficients_json(c: ActionCoefficients) -> dict[str, Any]:
    """One action's entry of ``modelData.coefficients``."""
    return {
        "actionKey": c.action_key,
        "intercept": c.intercept,
        "actionNumericCoefficients": _numeric_json(c.action_numeric),
        "actionCategoricalCoefficients": _categorical_json(c.action_categorical),
        "subjectNumericCoefficients": _numeric_json(c.subject_numeric),
        "subjectCategoricalCoefficients": _categorical_json(c.subject_categorical),
    }


@dataclass(frozen=True)
class BanditModel:
    """A contextual bandit's model as the evaluator serves it.

    Attributes:
        bandit_key: the bandit's key (also the flag variation value that routes to it).
        gamma: inverse-gap weighting's greediness (0 = uniform; larger = greedier).
        default_action_score: score of an action that has no coefficients (never seen in training).
        action_probability_floor: every action gets at least floor / n_actions probability.
        coefficients: action key -> ActionCoefficients.
        model_version, model_name, updated_at: metadata written to the JSON.
        n_events: number of events the model was trained on (not serialized).
    """

    bandit_key: str
    gamma: float
    default_action_score: float
    action_probability_floor: float
    coefficients: Mapping[str, ActionCoefficients]
    model_version: str = "1"
    model_name: str = "sortition-ridge"
    updated_at: str = field(default_factory=_utc_now)
    n_events: int = 0

    def __post_init__(self) -> None:
        if not self.gamma >= 0 or not math.isfinite(self.gamma):
            raise ValueError(f"gamma is {self.gamma!r}; it must be a finite number >= 0")
        if not 0 <= self.action_probability_floor <= 1:
            raise ValueError(
                f"action_probability_floor is {self.action_probability_floor!r}; it must be in [0, 1]"
            )

    def model_data(self) -> dict[str, Any]:
        """The ``modelData`` object."""
        return {
            "gamma": self.gamma,
            "defaultActionScore": self.default_action_score,
            "actionProbabilityFloor": self.action_probability_floor,
            "coefficients": {k: action_coefficients_json(c) for k, c in self.coefficients.items()},
        }

    def to_json(self) -> dict[str, Any]:
        """This model's entry in a bandit-models-v1 file's ``bandits`` object."""
        return {
            "banditKey": self.bandit_key,
            "modelName": self.model_name,
            "updatedAt": self.updated_at,
            "modelVersion": self.model_version,
            "modelData": self.model_data(),
        }

    def serving_model(self) -> ServingModel:
        """The evaluator's form of this model (what ``sortition.serving.bandits`` scores)."""
        return ServingModel(
            gamma=self.gamma,
            action_probability_floor=self.action_probability_floor,
            default_action_score=self.default_action_score,
            coefficients=MappingProxyType(dict(self.coefficients)),
            bandit_key=self.bandit_key,
            model_version=self.model_version,
        )

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> BanditModel:
        """Read one entry of a bandit-models-v1 ``bandits`` object (validated by the evaluator's
        parser, so what loads here is exactly what serving accepts)."""
        if not isinstance(entry, Mapping) or "modelData" not in entry:
            raise ValueError("a bandit model entry needs 'banditKey' and 'modelData' (bandit-models-v1)")
        key = str(entry.get("banditKey", ""))
        parsed = parse_bandit_model(entry, path=f"bandits.{key}")
        return cls(
            bandit_key=key,
            gamma=parsed.gamma,
            default_action_score=parsed.default_action_score,
            action_probability_floor=parsed.action_probability_floor,
            coefficients=dict(parsed.coefficients),
            model_version=parsed.model_version,
            model_name=str(entry.get("modelName", "")),
            updated_at=str(entry.get("updatedAt", "")),
        )


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


def load_bandit_models(obj: Mapping[str, Any]) -> dict[str, BanditModel]:
    """Read every model of a bandit-models-v1 file (dict already parsed from JSON)."""
    if "bandits" not in obj:
        raise ValueError("not a bandit-models-v1 file: it has no 'bandits' object")
    return {k: BanditModel.from_json({"banditKey": k, **v}) for k, v in obj["bandits"].items()}


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
        raise ValueError(
            f"no variation with value {model.bandit_key!r} is split to in flags {keys[:10]}; add a "
            "variation whose value is the bandit key and allocate traffic to it"
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
                "totalShards": 10000,
            }
        },
    }
    return link_bandit(flags, model, [flag_key])
