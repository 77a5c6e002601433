"""From a posterior to decisions: the best-arm rule, Thompson allocation per segment,
welfare-optimal policy trees, and SHIP / STOP / CONTINUE recommendations."""

from sortition.policy.allocation import thompson_allocation
from sortition.policy.arms import arm_win_frequencies, best_arms, expected_loss, iterative_floor_clip
from sortition.policy.decisions import DecisionThresholds, Recommendation, recommend
from sortition.policy.segments import Segment
from sortition.policy.tree import PolicyTree, fit_policy_tree, policy_tree_from_rules

__all__ = [
    "DecisionThresholds",
    "PolicyTree",
    "Recommendation",
    "Segment",
    "arm_win_frequencies",
    "best_arms",
    "expected_loss",
    "fit_policy_tree",
    "iterative_floor_clip",
    "policy_tree_from_rules",
    "recommend",
    "thompson_allocation",
]
