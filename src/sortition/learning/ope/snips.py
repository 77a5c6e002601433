"""Self-normalized inverse propensity scoring (SNIPS)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sortition.learning.ope.data import OffPolicyData, PolicyValueEstimate
from sortition.learning.ope.intervals import IntervalSettings, ratio_estimate


@dataclass(frozen=True)
class SNIPS:
    """V = sum(w r) / sum(w): a small bias (O(1/n)) for much lower variance than IPS, and
    invariant to adding a constant to rewards."""

    settings: IntervalSettings = field(default_factory=IntervalSettings)

    def estimate(self, data: OffPolicyData) -> PolicyValueEstimate:
        w = data.importance_weight
        return ratio_estimate("SNIPS", w * data.reward, w, data, self.settings)
