"""Scenario: a data-generating process that draws visitors, their outcomes under any arm, and the truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sortition.data import OUTCOME_KINDS, ExperimentData
from sortition.scenarios import library as lib
from sortition.scenarios.covariates import sample_visitors
from sortition.scenarios.truth import Truth

SCENARIOS = tuple(lib.LIFTS)


@dataclass(frozen=True)
class Scenario:
    """One synthetic world. Pure: every method takes the visitors (and an RNG where it draws).

    ``sample_visitors(n, rng)`` draws new visitors (a DataFrame of raw covariates);
    ``sample_outcomes(visitors, arm_index, rng)`` draws their outcomes under any assignment (what the
    adaptive loop's simulator calls each round); ``truth(visitors)`` gives the expected outcomes under every
    arm, for evaluation only.
    """

    name: str
    arms: tuple
    outcome: str

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    def sample_visitors(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """(n rows) device, channel, country, returning, recency, noise_1..noise_3."""
        return sample_visitors(int(n), rng)

    def _parts(self, v: pd.DataFrame):
        k = self.n_arms
        lift = lib.LIFTS[self.name](v, k)
        sev = lib.SEVERITY_LIFTS.get(self.name, lambda v, k: np.zeros((len(v), k - 1)))(v, k)
        zero = np.zeros((len(v), 1))
        lift, sev = np.hstack([zero, lift]), np.hstack([zero, sev])  # (n, K), control column 0
        if self.outcome == "continuous":
            return lib.baseline_continuous(v)[:, None] + lib.TAU_SCALE * lift, None, None
        p = np.clip(lib.baseline_conversion(v)[:, None] + lib.CONVERSION_SCALE * lift, 0.002, 0.998)
        if self.outcome == "binary":
            return p, p, None
        m = lib.baseline_log_order_value(v)[:, None] + lib.SEVERITY_SCALE * sev
        return p, p, m

    def truth(self, visitors: pd.DataFrame) -> Truth:
        """Expected outcome of every visitor under every arm (and conversion / order value parts)."""
        first, p, m = self._parts(visitors)
        if self.outcome == "revenue":
            value = np.exp(m + lib.ORDER_SIGMA**2 / 2)
            return Truth(self.arms, self.outcome, p * value, p, value)
        return Truth(self.arms, self.outcome, first, p, None)

    def sample_outcomes(self, visitors: pd.DataFrame, arm_index: np.ndarray, rng: np.random.Generator
                        ) -> np.ndarray:
        """(n,) float64 outcomes of ``visitors`` under the arms ``arm_index`` (0 = control)."""
        arm_index = np.asarray(arm_index, dtype=np.int64)
        if arm_index.shape != (len(visitors),) or arm_index.min(initial=0) < 0 or arm_index.max(initial=0) >= self.n_arms:
            raise ValueError(f"arm_index must be ({len(visitors)},) integers in [0, {self.n_arms}); "
                             f"got shape {arm_index.shape}.")
        first, p, m = self._parts(visitors)
        rows = np.arange(len(visitors))
        if self.outcome == "continuous":
            return first[rows, arm_index] + rng.normal(0.0, lib.NOISE_SD, len(visitors))
        converted = rng.random(len(visitors)) < p[rows, arm_index]
        if self.outcome == "binary":
            return converted.astype(np.float64)
        value = np.exp(m[rows, arm_index] + lib.ORDER_SIGMA * rng.standard_normal(len(visitors)))
        return np.where(converted, np.round(value, 2), 0.0)


def make_scenario(name: str, arms: int | Sequence[str] = 2, outcome: str | None = None) -> Scenario:
    """A named scenario with K arms (an int, or the arm names, control first).

    Names: homogeneous, two_segments, reversal, sparse, gradient, multi_winner, storefront (the product demo:
    3 arms control / free_shipping / bundle, revenue, mobile and desktop prefer different arms).
    """
    if name not in lib.LIFTS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {SCENARIOS}.")
    outcome = outcome or lib.DEFAULT_OUTCOME.get(name, "continuous")
    if outcome not in OUTCOME_KINDS:
        raise ValueError(f"outcome={outcome!r} is not a known kind; use one of {OUTCOME_KINDS}.")
    fixed = lib.FIXED_ARMS.get(name)
    if isinstance(arms, (int, np.integer)):
        if fixed is not None and arms in (2, len(fixed)):
            arms = fixed  # 2 is the generic default; this scenario has its own arms
        elif arms < 2:
            raise ValueError(f"arms={arms}: a scenario needs at least 2 arms (control first).")
        else:
            arms = ("control",) + tuple(f"arm_{j}" for j in range(1, int(arms)))
    arms = tuple(arms)
    if fixed is not None and len(arms) != len(fixed):
        raise ValueError(f"scenario {name!r} has exactly {len(fixed)} arms {fixed}; got {len(arms)}.")
    if len(arms) < 2 or len(set(arms)) != len(arms):
        raise ValueError(f"arms={arms}: need at least 2 distinct arm names, control first.")
    return Scenario(name, arms, outcome)


def generate(scenario: str | Scenario, n: int, arms: int | Sequence[str] = 2, outcome: str | None = None,
             seed: int | np.random.Generator = 0, weights: Sequence[float] | None = None,
             record_propensity: bool = True) -> tuple[ExperimentData, Truth]:
    """Draw a randomized experiment: n visitors assigned at random (``weights`` per arm, default uniform).

    Returns the data (columns visitor_id, arm, y, propensity, covariates) and, separately, its Truth.
    """
    sc = scenario if isinstance(scenario, Scenario) else make_scenario(scenario, arms, outcome)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    k = sc.n_arms
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (k,) or np.any(w <= 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError(f"weights must be {k} positive numbers summing to 1, got {weights}.")
    visitors = sc.sample_visitors(n, rng)
    arm_index = rng.choice(k, size=int(n), p=w)
    y = sc.sample_outcomes(visitors, arm_index, rng)
    head = {"visitor_id": [f"v{i:07d}" for i in range(int(n))],
            "arm": np.asarray(sc.arms, dtype=object)[arm_index], "y": y}
    if record_propensity:
        head["propensity"] = w[arm_index]
    frame = pd.concat([pd.DataFrame(head), visitors], axis=1)
    data = ExperimentData.from_frame(frame, arm="arm", outcome="y", subject="visitor_id", arms=sc.arms,
                                     propensity="propensity" if record_propensity else None)
    return data, sc.truth(visitors)
