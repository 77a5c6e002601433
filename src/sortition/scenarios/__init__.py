"""Synthetic experiments with known ground truth (kept in a separate Truth type)."""

from sortition.scenarios.evaluate import Evaluation, evaluate
from sortition.scenarios.scenario import SCENARIOS, Scenario, generate, make_scenario
from sortition.scenarios.truth import Truth

__all__ = ["SCENARIOS", "Evaluation", "Scenario", "Truth", "evaluate", "generate", "make_scenario"]
