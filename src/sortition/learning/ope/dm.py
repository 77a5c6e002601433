"""Direct method (DM): the reward model's prediction under the candidate policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from sortition.learning.ope.data import OffPolicyData, PolicyValueEstimate
from sortition.learning.ope.intervals import IntervalSettings, ratio_estimate


@dataclass(frozen=True)
class DM:
    """V = mean(sum_a pi(a|x) q(x, a)). Low variance, biased by the reward model's error; its
    interval reflects only the sampling of contexts, not that error."""

    settings: IntervalSettings = field(default_factory=IntervalSettings)

    def estimate(self, data: OffPolicyData) -> PolicyValueEstimate:
        _, q_target = data.require_reward_model("DM")
        return ratio_estimate("DM", q_target, None, data, self.settings, uses_weights=False)
