"""Confidence intervals and overlap checks shared by every estimator.

Every estimator here is a ratio of means over events, value = mean(num) / mean(den), with
den = 1 except for self-normalized IPS. That one form gives both intervals:
- normal: the delta method, influence terms (num - value * den) / mean(den);
- bootstrap: resample events with replacement, recompute the ratio, take percentiles.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from sortition.learning.ope.data import OffPolicyData, PolicyValueEstimate


class OverlapWarning(UserWarning):
    """The candidate policy puts weight where the logging policy had (almost) none."""


@dataclass(frozen=True)
class IntervalSettings:
    """How an estimator reports uncertainty.

    Attributes:
        interval: "normal" (delta method, fast) or "bootstrap" (percentile, resampling events).
        alpha: 1 - nominal coverage.
        n_bootstrap: bootstrap resamples.
        seed: seed of the bootstrap's generator.
        min_ess_fraction: warn when the effective sample size is below this fraction of n.
    """

    interval: str = "normal"
    alpha: float = 0.05
    n_bootstrap: int = 500
    seed: int = 0
    min_ess_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.interval not in ("normal", "bootstrap"):
            raise ValueError(f"interval is {self.interval!r}; use 'normal' or 'bootstrap'")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha is {self.alpha!r}; it must be in (0, 1)")
        if self.n_bootstrap < 10:
            raise ValueError(
                f"n_bootstrap is {self.n_bootstrap}; use at least 10 (hundreds for 95% intervals)"
            )


def ratio_estimate(
    name: str,
    num: np.ndarray,
    den: np.ndarray | None,
    data: OffPolicyData,
    settings: IntervalSettings,
    uses_weights: bool = True,
) -> PolicyValueEstimate:
    """Value, interval and overlap warnings for value = mean(num) / mean(den).

    Args:
        num: (n,) per-event numerator terms; den: (n,) denominator terms or None for 1.
        uses_weights: False for DM, whose value does not rest on importance weights.
    """
    n = num.shape[0]
    mden = 1.0 if den is None else float(den.mean())
    if mden <= 0:
        value, se, lo, hi = float("nan"), float("inf"), float("-inf"), float("inf")
    else:
        value = float(num.mean()) / mden
        influence = num - value * (1.0 if den is None else den)
        se = float(influence.std(ddof=1)) / mden / math.sqrt(n) if n > 1 else float("inf")
        if settings.interval == "normal":
            z = float(ndtri(1 - settings.alpha / 2))
            lo, hi = value - z * se, value + z * se
        else:
            lo, hi = _bootstrap(num, den, settings)
    ess = data.effective_sample_size() if uses_weights else float(n)
    notes = _overlap_warnings(data, ess, settings) if uses_weights else ()
    for note in notes:
        warnings.warn(f"{name}: {note}", OverlapWarning, stacklevel=3)
    return PolicyValueEstimate(
        estimator=name,
        value=value,
        lower=float(lo),
        upper=float(hi),
        std_error=se,
        interval=settings.interval,
        alpha=settings.alpha,
        n=n,
        effective_sample_size=ess,
        warnings=notes,
    )


def _bootstrap(num: np.ndarray, den: np.ndarray | None, s: IntervalSettings) -> tuple[float, float]:
    n = num.shape[0]
    rng = np.random.default_rng(s.seed)
    chunk = max(1, min(s.n_bootstrap, 4_000_000 // max(n, 1)))  # bound memory at ~32 MB of indices
    stats = np.empty(s.n_bootstrap)
    done = 0
    while done < s.n_bootstrap:
        b = min(chunk, s.n_bootstrap - done)
        idx = rng.integers(0, n, size=(b, n))
        top = num[idx].mean(axis=1)
        stats[done : done + b] = top if den is None else top / np.maximum(den[idx].mean(axis=1), 1e-300)
        done += b
    lo, hi = np.quantile(stats, [s.alpha / 2, 1 - s.alpha / 2])
    return float(lo), float(hi)


def _overlap_warnings(data: OffPolicyData, ess: float, s: IntervalSettings) -> tuple[str, ...]:
    notes = []
    if ess < s.min_ess_fraction * data.n:
        notes.append(
            f"effective sample size {ess:.1f} of {data.n} events ({ess / data.n:.1%}): the candidate puts "
            "weight where the logging policy rarely acted, so the estimate rests on few events; "
            "log with more exploration (a higher action_probability_floor) or evaluate a closer policy"
        )
    if data.unsupported_mass is not None:
        m = float(data.unsupported_mass.mean())
        if m > 0.01:
            notes.append(
                f"the candidate puts {m:.1%} of its probability on actions the logging policy (almost) "
                "never chose in that context; importance-weighted estimates cannot see that part"
            )
    return tuple(notes)
