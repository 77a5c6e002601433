"""Doubly robust (DR): the direct method corrected by importance-weighted residuals."""

from __future__ import annotations

from dataclasses import dataclass, field

from sortition.learning.ope.data import OffPolicyData, PolicyValueEstimate
from sortition.learning.ope.intervals import IntervalSettings, ratio_estimate


@dataclass(frozen=True)
class DR:
    """V = mean(sum_a pi(a|x) q(x, a) + w (r - q(x, a_logged))): unbiased when either the
    propensities or the reward model are right; lower variance than IPS when q is good."""

    settings: IntervalSettings = field(default_factory=IntervalSettings)

    def estimate(self, data: OffPolicyData) -> PolicyValueEstimate:
        q_logged, q_target = data.require_reward_model("DR")
        terms = q_target + data.importance_weight * (data.reward - q_logged)
        return ratio_estimate("DR", terms, None, data, self.settings)
