"""Warm starts: the last draw of a BCF fit's forests, to start the next round's sampler from.

A round's data are the previous rounds' rows plus new ones, so the previous posterior's last draw is
already close to the new posterior. Starting stochtree's MCMC there (``previous_model_json``) replaces
the grow-from-root sweeps by a short burn-in; the retained draws are the same number of MCMC iterations
as a cold fit's. What that saves (``benchmarks/warm_profile.py``, one thread, loop rows of 3,000-7,500
visitors): a GFR sweep costs about as much as 6-7 MCMC sweeps, so the 10 of them are 35-40% of a cold
fit; the retained draws are 72-86% of a warm fit, which is therefore 1.4-1.6x faster than a cold refit
(1.5-1.7x with no burn-in at all) and could not be 2x faster without fewer retained draws. Of those
iterations, 18-24% of a warm fit is stochtree predicting both forests at the fitted rows again every
iteration (its tau_0 step; for probit also the latent draw), predictions its samplers already track: only a
change in stochtree could drop it. After sampling, 6-10% of a warm fit predicts the retained draws: the
effect forests at the fitted rows (stochtree's own, kept as the draws) and, for the order-value model,
both forests at the non-converters only (the converters' draws are stochtree's in-sample ones). A warm start
applies only when the design matrix has the same columns and the fit the same outcome kind and arms;
otherwise the fit is cold (``Posterior.info["warm_start"]`` says which, and why).

Reference: stochtree's ``BCFModel.sample(previous_model_json=..., previous_model_warmstart_sample_num=...)``;
Hahn, Murray & Carvalho (2020), Bayesian regression tree models for causal inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_FORMAT = "sortition.warm-start/1"


@dataclass(frozen=True)
class WarmStart:
    """One BCF fit's forests at its last draws (stochtree JSON, ``KEPT_DRAWS`` draws per model).

    Attributes:
        outcome: the fit's outcome kind ("continuous", "binary", "revenue").
        columns: the design matrix's column names (``ExperimentData.encoding.names``).
        n_arms: K, control included.
        models: per model of the fit ("outcome"; or "conversion" and "severity" for revenue) the
            stochtree BCF JSON string holding that model's last ``KEPT_DRAWS`` draws.
    """

    outcome: str
    columns: tuple[str, ...]
    n_arms: int
    models: Mapping[str, str] = field(repr=False)

    def mismatch(self, outcome: str, columns: tuple[str, ...], n_arms: int) -> str | None:
        """Why this warm start cannot start a fit of (outcome, columns, n_arms); None when it can."""
        if outcome != self.outcome:
            return f"outcome {outcome!r} differs from the previous fit's {self.outcome!r}"
        if n_arms != self.n_arms:
            return f"{n_arms} arms differ from the previous fit's {self.n_arms}"
        if tuple(columns) != self.columns:
            new = sorted(set(columns) - set(self.columns))[:3]
            return f"the covariate encoding changed (new columns {new})" if new else "the covariate encoding changed"
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the state file keeps it, so a reloaded experiment warm-starts too)."""
        return {"format": _FORMAT, "outcome": self.outcome, "columns": list(self.columns),
                "n_arms": self.n_arms, "models": dict(self.models)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> WarmStart:
        if not isinstance(doc, Mapping) or doc.get("format") != _FORMAT:
            found = doc.get("format") if isinstance(doc, Mapping) else type(doc).__name__
            raise ValueError(f"not a Sortition warm start (format {found!r}, expected {_FORMAT!r})")
        models = doc["models"]
        if not isinstance(models, Mapping) or not all(isinstance(v, str) for v in models.values()):
            raise ValueError("warm start 'models' must map model names to stochtree JSON strings")
        return cls(str(doc["outcome"]), tuple(str(c) for c in doc["columns"]), int(doc["n_arms"]), dict(models))


# Draws a warm start keeps. Two, not one: stochtree 0.4.5 cannot write a model holding a single draw
# (its JSON writer squeezes a length-1 parameter vector to a scalar and refuses it).
KEPT_DRAWS = 2
# The same writer refuses a model fitted on a single covariate column (the preprocessor's per-column
# vectors are then of length 1), so such a fit keeps no warm start and every round of it is cold.
ONE_COLUMN = "one covariate column: stochtree 0.4.5 cannot save such a model to start from"


def last_draw_json(model: Any) -> str | None:
    """The stochtree JSON of a sampled ``BCFModel`` trimmed to its last ``KEPT_DRAWS`` draws (the model
    is trimmed in place); a warm start starts at the last of them (index ``KEPT_DRAWS - 1``).

    The full model holds every retained draw's forests (megabytes); the last draw is all a warm start
    reads. None when the fit retained fewer than ``KEPT_DRAWS`` draws.
    """
    if model.num_samples < KEPT_DRAWS:
        return None
    drop = model.num_samples - KEPT_DRAWS
    for _ in range(drop):
        model.forest_container_mu.delete_sample(0)
        model.forest_container_tau.delete_sample(0)
    for name in ("global_var_samples", "leaf_scale_mu_samples", "leaf_scale_tau_samples", "b0_samples",
                 "b1_samples"):
        values = getattr(model, name, None)
        if values is not None:
            setattr(model, name, values[drop:])
    tau0 = getattr(model, "tau_0_samples", None)
    if tau0 is not None:
        model.tau_0_samples = tau0[:, drop:]
    model.num_samples = KEPT_DRAWS
    return model.to_json()
