"""Inverse propensity scoring (IPS)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sortition.learning.ope.data import OffPolicyData, PolicyValueEstimate
from sortition.learning.ope.intervals import IntervalSettings, ratio_estimate


@dataclass(frozen=True)
class IPS:
    """V = mean(w r), w = pi(a|x) / mu(a|x): unbiased when the logger covers the candidate's
    actions; variance grows with the weights."""

    settings: IntervalSettings = field(default_factory=IntervalSettings)

    def estimate(self, data: OffPolicyData) -> PolicyValueEstimate:
        return ratio_estimate("IPS", data.importance_weight * data.reward, None, data, self.settings)
