"""Scenario: a data-generating process that draws visitors, their outcomes under any arm, and the truth."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sortition.data import OUTCOME_KINDS, ExperimentData
from sortition.names import did_you_mean
from sortition.scenarios import library as lib
from sortition.scenarios.covariates import sample_visitors
from sortition.scenarios.truth import Truth

SCENARIOS = tuple(lib.LIFTS)

Lift = Callable[[pd.DataFrame, int], np.ndarray]  # (visitors, K) -> (n, K-1) dimensionless lift per treatment


@dataclass(frozen=True)
class ScenarioDefinition:
    """What makes a named world: its lift function(s) and, optionally, fixed arms and a default outcome.

    The library's scenarios are definitions (:data:`LIBRARY`); a user's come from a Python file in the
    library's form (:func:`sortition.scenarios.user.load_scenario_file`).

    Attributes:
        name: the scenario's name.
        lift: ``lift(visitors, K) -> (n, K-1)`` float lift of each treatment over control (see
            :mod:`sortition.scenarios.library` for how it maps to each outcome kind).
        severity_lift: the same for the revenue order value's log-mean; None: no effect on order value.
        fixed_arms: the scenario's own arm names (control first), or None for any K.
        default_outcome: the outcome kind when none is asked for.
        source: "library", or where the definition was loaded from (a file path or ``module:attr``).
        digest: SHA-256 of the source file's bytes ("" for the library), so a changed file is a new world.
    """

    name: str
    lift: Lift = field(repr=False)
    severity_lift: Lift | None = field(default=None, repr=False)
    fixed_arms: tuple | None = None
    default_outcome: str = "continuous"
    source: str = "library"
    digest: str = ""

    def make(self, arms: int | Sequence[str] | None = None, outcome: str | None = None) -> Scenario:
        """This world with K arms (an int, or the arm names, control first) and an outcome kind.

        ``arms=None``: the fixed arms, else 2. With fixed arms, another count is refused (not replaced)."""
        outcome = outcome or self.default_outcome
        if outcome not in OUTCOME_KINDS:
            raise ValueError(f"outcome={outcome!r} is not a known kind"
                             f"{did_you_mean(outcome, OUTCOME_KINDS)}; use one of {OUTCOME_KINDS}.")
        fixed = self.fixed_arms
        if arms is None:
            arms = fixed if fixed is not None else 2
        if isinstance(arms, (int, np.integer)):
            if fixed is not None and arms == len(fixed):
                arms = fixed
            elif arms < 2:
                raise ValueError(f"arms={arms}: a scenario needs at least 2 arms (control first).")
            else:
                arms = ("control",) + tuple(f"arm_{j}" for j in range(1, int(arms)))
        arms = tuple(arms)
        if fixed is not None and len(arms) != len(fixed):
            raise ValueError(f"scenario {self.name!r} has exactly {len(fixed)} arms {fixed}; got {len(arms)} "
                             "(leave arms out to use them).")
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise ValueError(f"arms={arms}: need at least 2 distinct arm names, control first.")
        return Scenario(self.name, arms, outcome, self)


LIBRARY: Mapping[str, ScenarioDefinition] = {
    name: ScenarioDefinition(name, lift, lib.SEVERITY_LIFTS.get(name), lib.FIXED_ARMS.get(name),
                             lib.DEFAULT_OUTCOME.get(name, "continuous"))
    for name, lift in lib.LIFTS.items()
}


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
    definition: ScenarioDefinition | None = field(default=None, compare=False, repr=False)  # None: the library's

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    def sample_visitors(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """(n rows) device, channel, country, returning, recency, noise_1..noise_3."""
        return sample_visitors(int(n), rng)

    def _parts(self, v: pd.DataFrame):
        k = self.n_arms
        world = self.definition or LIBRARY[self.name]
        lift = np.asarray(world.lift(v, k), dtype=np.float64)
        sev = (np.zeros((len(v), k - 1)) if world.severity_lift is None
               else np.asarray(world.severity_lift(v, k), dtype=np.float64))
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


def make_scenario(name: str, arms: int | Sequence[str] | None = None, outcome: str | None = None) -> Scenario:
    """A named scenario with K arms (an int, or the arm names, control first; None: its own, else 2).

    Names: homogeneous, two_segments, reversal, sparse, gradient, multi_winner, storefront (the product demo:
    3 arms control / free_shipping / bundle, revenue, mobile and desktop prefer different arms).
    """
    if name not in LIBRARY:
        raise ValueError(f"unknown scenario {name!r}{did_you_mean(name, SCENARIOS)}; "
                         f"choose one of {SCENARIOS}.")
    return LIBRARY[name].make(arms, outcome)


def generate(scenario: str | Scenario, n: int, arms: int | Sequence[str] | None = None,
             outcome: str | None = None, seed: int | np.random.Generator = 0,
             weights: Sequence[float] | None = None,
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
