"""Off-policy evaluation: what a candidate bandit model or allocation plan would earn, from logs.

Each estimator is a small frozen dataclass with one method, ``estimate(data) -> PolicyValueEstimate``.
"""

from sortition.learning.ope.candidates import candidate_data, model_probabilities
from sortition.learning.ope.data import OffPolicyData, PolicyValueEstimate
from sortition.learning.ope.dm import DM
from sortition.learning.ope.dr import DR
from sortition.learning.ope.flags import flag_plan_data, flag_probabilities
from sortition.learning.ope.intervals import IntervalSettings, OverlapWarning
from sortition.learning.ope.ips import IPS
from sortition.learning.ope.plans import plan_data, plan_probabilities, segment_labels
from sortition.learning.ope.snips import SNIPS

__all__ = [
    "DM",
    "DR",
    "IPS",
    "SNIPS",
    "IntervalSettings",
    "OffPolicyData",
    "OverlapWarning",
    "PolicyValueEstimate",
    "candidate_data",
    "evaluate",
    "flag_plan_data",
    "flag_probabilities",
    "model_probabilities",
    "plan_data",
    "plan_probabilities",
    "segment_labels",
]


def evaluate(data: OffPolicyData, settings: IntervalSettings | None = None) -> dict[str, PolicyValueEstimate]:
    """Every estimator that ``data`` supports (DM and DR need a reward model), by name."""
    s = settings or IntervalSettings()
    estimators = [IPS(s), SNIPS(s)]
    if data.expected_reward_logged is not None and data.expected_reward_target is not None:
        estimators += [DM(s), DR(s)]
    return {type(e).__name__: e.estimate(data) for e in estimators}
