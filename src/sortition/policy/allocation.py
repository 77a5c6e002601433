"""Thompson sampling at segment granularity: each arm's weight is P(arm is the segment's best)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sortition.policy.arms import arm_win_frequencies, iterative_floor_clip
from sortition.policy.segments import Segment
from sortition.posterior import Posterior
from sortition.rules import Rule


def require_posterior(posterior: Any, caller: str):
    """The boundary check shared by the policy functions: a Posterior with observed data."""
    if not isinstance(posterior, Posterior):
        raise TypeError(
            f"{caller} needs a sortition.posterior.Posterior, got {type(posterior).__name__}; "
            "fit one with sortition.posterior.fit or wrap draws with Posterior.from_draws(..., data=...)"
        )
    if posterior.data is None:
        raise ValueError(
            f"{caller}: the posterior carries no observed data (posterior.data is None), so segment "
            "rules have no visitors to match; build it with Posterior.from_draws(draws, data=ExperimentData)"
        )
    return posterior.data


def segment_mask(posterior: Posterior, segment_id: Any, rule: Rule) -> np.ndarray:
    """Members of a segment (n,) bool; ValueError when it matches no visitor."""
    mask = rule.mask(posterior.data.covariates)
    if not mask.any():
        raise ValueError(
            f"segment {segment_id!r} ({rule.describe()}) matches no visitor; an allocation over an "
            "empty segment is undefined: drop the segment or widen its rule"
        )
    return mask


def segment_win_frequencies(posterior: Posterior, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment-mean contrast draws (S, K-1), raw win frequencies (K,)) for the visitors in ``mask``.

    The one code path behind ``thompson_allocation`` and the policy tree's
    ``arm_best_probabilities``, so the two agree draw for draw. The means are computed in chunks
    by ``Posterior.segment_mean_contrasts`` (no second copy of the draws).
    """
    means = posterior.segment_mean_contrasts(mask)
    return means, arm_win_frequencies(means, posterior.n_arms)


def thompson_allocation(
    posterior: Posterior, segments: Sequence[Segment], epsilon: float = 0.02
) -> dict[Any, dict[Any, float]]:
    """Per segment, each arm's traffic weight = posterior probability that it is the segment's best.

    Each draw votes once per segment, with the draw's contrasts averaged over the segment's
    visitors (:func:`~sortition.policy.arms.best_arms`: control when no contrast is positive).
    The raw win frequencies then pass the exploration floor-clip
    (:func:`~sortition.policy.arms.iterative_floor_clip`, inert when no arm is below
    ``epsilon / K``).

    Args:
        posterior: a Posterior with observed data (its covariates are what rules match).
        segments: objects with ``id`` and ``rule`` (e.g. ``fit_policy_tree(...).segments``).
        epsilon: exploration mass in [0, 1]; 0 returns raw win frequencies.

    Returns:
        ``{segment.id: {arm: weight}}``, inner dicts in arm order (control first), summing to 1.
    """
    if not isinstance(epsilon, (int, float)) or not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"thompson_allocation: epsilon must be in [0, 1], got {epsilon!r}")
    require_posterior(posterior, "thompson_allocation")
    checked = []
    for position, seg in enumerate(segments):
        if not isinstance(getattr(seg, "rule", None), Rule) or not hasattr(seg, "id"):
            raise TypeError(
                f"segments[{position}] must have an id and a sortition.rules.Rule rule, got {type(seg).__name__}"
            )
        checked.append(seg)
    ids = [seg.id for seg in checked]
    if len(set(ids)) != len(ids):
        raise ValueError(f"segment ids must be unique, got {ids}")
    masks = [segment_mask(posterior, seg.id, seg.rule) for seg in checked]  # validate all first
    allocation: dict[Any, dict[Any, float]] = {}
    for seg, mask in zip(checked, masks):
        _, raw = segment_win_frequencies(posterior, mask)
        weights = iterative_floor_clip(raw, float(epsilon))
        allocation[seg.id] = {arm: float(w) for arm, w in zip(posterior.arms, weights)}
    return allocation
