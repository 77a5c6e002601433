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
from typing import Any


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _finite(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"{where} is {x!r}; expected a number")
    if not math.isfinite(float(x)):
        raise ValueError(f"{where} is {x!r}; expected a finite number")
    return float(x)


@dataclass(frozen=True)
class NumericCoefficient:
    attribute_key: str
    coefficient: float
    missing_value_coefficient: float

    def to_json(self) -> dict[str, Any]:
        return {
            "attributeKey": self.attribute_key,
            "coefficient": self.coefficient,
            "missingValueCoefficient": self.missing_value_coefficient,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str) -> NumericCoefficient:
        return cls(
            str(obj["attributeKey"]),
            _finite(obj["coefficient"], f"{where}.coefficient"),
            _finite(obj.get("missingValueCoefficient", 0.0), f"{where}.missingValueCoefficient"),
        )


@dataclass(frozen=True)
class CategoricalCoefficient:
    attribute_key: str
    value_coefficients: Mapping[str, float]
    missing_value_coefficient: float

    def to_json(self) -> dict[str, Any]:
        return {
            "attributeKey": self.attribute_key,
            "valueCoefficients": dict(self.value_coefficients),
            "missingValueCoefficient": self.missing_value_coefficient,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str) -> CategoricalCoefficient:
        values = {
            str(k): _finite(v, f"{where}.valueCoefficients[{k!r}]")
            for k, v in obj.get("valueCoefficients", {}).items()
        }
        return cls(
            str(obj["attributeKey"]),
            values,
            _finite(obj.get("missingValueCoefficient", 0.0), f"{where}.missingValueCoefficient"),
        )


@dataclass(frozen=True)
class ActionCoefficients:
    """One action's linear model (raw attribute units)."""

    action_key: str
    intercept: float
    subject_numeric: tuple[NumericCoefficient, ...] = ()
    subject_categorical: tuple[CategoricalCoefficient, ...] = ()
    action_numeric: tuple[NumericCoefficient, ...] = ()
    action_categorical: tuple[CategoricalCoefficient, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "actionKey": self.action_key,
            "intercept": self.intercept,
            "actionNumericCoefficients": [c.to_json() for c in self.action_numeric],
            "actionCategoricalCoefficients": [c.to_json() for c in self.action_categorical],
            "subjectNumericCoefficients": [c.to_json() for c in self.subject_numeric],
            "subjectCategoricalCoefficients": [c.to_json() for c in self.subject_categorical],
        }

    @classmethod
    def from_json(cls, key: str, obj: Mapping[str, Any]) -> ActionCoefficients:
        w = f"coefficients[{key!r}]"

        def group(name: str, kind: type) -> tuple[Any, ...]:
            return tuple(kind.from_json(c, f"{w}.{name}[{i}]") for i, c in enumerate(obj.get(name, [])))

        return cls(
            action_key=str(obj.get("actionKey", key)),
            intercept=_finite(obj.get("intercept", 0.0), f"{w}.intercept"),
            subject_numeric=group("subjectNumericCoefficients", NumericCoefficient),
            subject_categorical=group("subjectCategoricalCoefficients", CategoricalCoefficient),
            action_numeric=group("actionNumericCoefficients", NumericCoefficient),
            action_categorical=group("actionCategoricalCoefficients", CategoricalCoefficient),
        )


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
            "coefficients": {k: c.to_json() for k, c in self.coefficients.items()},
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

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> BanditModel:
        """Read one entry of a bandit-models-v1 ``bandits`` object."""
        if not isinstance(entry, Mapping) or "modelData" not in entry:
            raise ValueError("a bandit model entry needs 'banditKey' and 'modelData' (bandit-models-v1)")
        data = entry["modelData"]
        key = str(entry.get("banditKey", ""))
        coefficients = {
            str(k): ActionCoefficients.from_json(str(k), v) for k, v in data.get("coefficients", {}).items()
        }
        return cls(
            bandit_key=key,
            gamma=_finite(data.get("gamma", 1.0), f"{key}.modelData.gamma"),
            default_action_score=_finite(data.get("defaultActionScore", 0.0), f"{key}.defaultActionScore"),
            action_probability_floor=_finite(
                data.get("actionProbabilityFloor", 0.0), f"{key}.actionProbabilityFloor"
            ),
            coefficients=coefficients,
            model_version=str(entry.get("modelVersion", "")),
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
    """A copy of a flags (UFC) file whose ``banditReferences`` route to ``model``.

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
    return out
