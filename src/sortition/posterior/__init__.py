"""Posteriors over per-visitor treatment contrasts (arm k minus control) for K >= 2 arms."""

from sortition.posterior.fit import ENGINES, fit
from sortition.posterior.result import ArmLift, LiftSummary, Posterior, summarize_lifts

__all__ = ["ENGINES", "ArmLift", "LiftSummary", "Posterior", "fit", "summarize_lifts"]
