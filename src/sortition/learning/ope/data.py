"""What an off-policy estimator reads, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _vector(name: str, x: object, n: int | None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per logged event); got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows but reward has {n}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name} is not finite in rows {bad[:5].tolist()}")
    return a


@dataclass(frozen=True, eq=False)
class OffPolicyData:
    """Logged events seen through a candidate policy, as arrays of one value per event.

    Attributes:
        reward: (n,) observed rewards.
        logging_probability: (n,) probability the logging policy gave the logged action, in (0, 1].
        target_probability: (n,) probability the candidate policy gives the logged action, in [0, 1].
        expected_reward_logged: (n,) a reward model's prediction for the logged action, or None.
        expected_reward_target: (n,) the reward model's prediction averaged over the candidate's
            action distribution in that context, sum_a pi(a|x) q(x, a), or None.
        unsupported_mass: (n,) candidate probability on actions the logger gave (almost) no
            probability in that context, or None when unknown.
    DM and DR need the two ``expected_reward_*`` arrays; IPS and SNIPS need only the first three.
    """

    reward: np.ndarray
    logging_probability: np.ndarray
    target_probability: np.ndarray
    expected_reward_logged: np.ndarray | None = None
    expected_reward_target: np.ndarray | None = None
    unsupported_mass: np.ndarray | None = None

    def __post_init__(self) -> None:
        r = _vector("reward", self.reward, None)
        n = r.shape[0]
        if n == 0:
            raise ValueError("no logged events: off-policy evaluation needs at least one")
        p = _vector("logging_probability", self.logging_probability, n)
        bad = np.flatnonzero(~((p > 0) & (p <= 1)))
        if bad.size:
            raise ValueError(
                f"logging_probability must be in (0, 1]; rows {bad[:5].tolist()} have {p[bad[:5]].tolist()}"
            )
        pi = _vector("target_probability", self.target_probability, n)
        bad = np.flatnonzero(~((pi >= 0) & (pi <= 1 + 1e-9)))
        if bad.size:
            raise ValueError(
                f"target_probability must be in [0, 1]; rows {bad[:5].tolist()} have {pi[bad[:5]].tolist()}"
            )
        object.__setattr__(self, "reward", r)
        object.__setattr__(self, "logging_probability", p)
        object.__setattr__(self, "target_probability", pi)
        for name in ("expected_reward_logged", "expected_reward_target", "unsupported_mass"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, _vector(name, v, n))

    @property
    def n(self) -> int:
        return self.reward.shape[0]

    @property
    def importance_weight(self) -> np.ndarray:
        """(n,) pi(a|x) / mu(a|x) for the logged action."""
        return self.target_probability / self.logging_probability

    def effective_sample_size(self) -> float:
        """Kish's effective sample size of the importance weights, (sum w)^2 / sum w^2."""
        w = self.importance_weight
        s2 = float(np.sum(w * w))
        return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0

    def require_reward_model(self, estimator: str) -> tuple[np.ndarray, np.ndarray]:
        if self.expected_reward_logged is None or self.expected_reward_target is None:
            raise ValueError(
                f"{estimator} needs a reward model: set expected_reward_logged and expected_reward_target "
                "(see sortition.learning.ope.candidate_data or plan_data)"
            )
        return self.expected_reward_logged, self.expected_reward_target


@dataclass(frozen=True)
class PolicyValueEstimate:
    """An estimate of a candidate policy's mean reward per event, with its interval.

    ``interval`` is "normal" or "bootstrap"; [lower, upper] covers the value with nominal
    probability 1 - alpha. ``effective_sample_size`` is Kish's ESS of the importance weights
    (n for DM, which uses none); ``warnings`` says when the estimate rests on too little overlap.
    """

    estimator: str
    value: float
    lower: float
    upper: float
    std_error: float
    interval: str
    alpha: float
    n: int
    effective_sample_size: float
    warnings: tuple[str, ...] = ()

    def covers(self, truth: float) -> bool:
        return self.lower <= truth <= self.upper
