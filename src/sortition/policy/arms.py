"""The one best-arm rule, win frequencies over draws, and the exploration floor-clip.

Arms are indexed control first: arm 0 is control, arm j+1 is contrast j.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def best_arms(deltas: np.ndarray) -> np.ndarray:
    """The winning arm per contrast vector (the one best-arm rule, used everywhere).

    Args:
        deltas: contrasts ``(..., K-1)``, arm j+1 minus control.

    Returns:
        int array ``(...)``: ``argmax_j delta_j + 1`` (ties to the first), or 0 (control) when no
        contrast is strictly positive.
    """
    deltas = np.asarray(deltas)
    if deltas.ndim == 0 or deltas.shape[-1] == 0:
        raise ValueError(f"best_arms needs contrasts of shape (..., K-1) with K >= 2, got {deltas.shape}")
    winner = np.argmax(deltas, axis=-1) + 1
    return np.where(deltas.max(axis=-1) > 0.0, winner, 0)


def arm_win_frequencies(mean_contrasts: np.ndarray, n_arms: int) -> np.ndarray:
    """Share of draws each arm wins.

    Args:
        mean_contrasts: ``(S, K-1)``, per draw the (segment-mean) contrast vector.
        n_arms: K, control included.

    Returns:
        ``(K,)`` float64 summing to 1: arm a's win frequency under :func:`best_arms`.
    """
    mean_contrasts = np.asarray(mean_contrasts)
    if mean_contrasts.ndim != 2 or mean_contrasts.shape[1] != n_arms - 1 or mean_contrasts.shape[0] == 0:
        raise ValueError(
            f"mean_contrasts must have shape (S >= 1, n_arms - 1 = {n_arms - 1}), got {mean_contrasts.shape}"
        )
    counts = np.bincount(best_arms(mean_contrasts), minlength=n_arms)
    return counts / counts.sum()


def iterative_floor_clip(raw: np.ndarray, epsilon: float) -> np.ndarray:
    """Raise arms below ``epsilon / K`` to exactly that floor, keeping the total at 1.

    Inert (returns ``raw`` itself, unchanged) when no arm is below the floor. Otherwise the arms
    below the floor are fixed at it, the free arms rescaled to ``1 - floor * n_fixed``, and this is
    repeated until no free arm is below the floor (at most K passes for epsilon in [0, 1]).

    Args:
        raw: ``(K,)`` weights summing to 1.
        epsilon: total exploration mass in [0, 1]; the per-arm floor is ``epsilon / K``.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    n_arms = raw.shape[0]
    floor = epsilon / n_arms
    if not np.any(raw < floor):
        return raw
    weights = np.array(raw, dtype=float)
    fixed = np.zeros(n_arms, dtype=bool)
    while True:
        newly = (weights < floor) & ~fixed
        if not newly.any():
            return weights
        weights[newly] = floor
        fixed |= newly
        free = ~fixed
        # same arithmetic as the reference (scale = target / free sum) so weights agree bit for bit
        weights[free] *= (1.0 - floor * int(fixed.sum())) / weights[free].sum()


def expected_loss(mean_contrasts: np.ndarray, arms: Sequence[str]) -> dict[str, float]:
    """Expected loss of shipping each arm against the best of all arms: E[max_k value_k - value_arm].

    Multi-arm (unlike ``recommend``'s pairwise ``loss_if_ship`` against control); used by the
    sequential experiment's graduation rule and its report.

    Args:
        mean_contrasts: (S, K-1) segment-mean contrasts (control = 0), metric units.
    Returns:
        ``{arm: loss}`` in arm order, control included, metric units (>= 0).
    """
    values = np.concatenate([np.zeros((mean_contrasts.shape[0], 1)), np.asarray(mean_contrasts, float)], axis=1)
    regret = values.max(axis=1, keepdims=True) - values
    return {a: float(r) for a, r in zip(arms, regret.mean(axis=0), strict=True)}
