"""Experiment data: one validated, row-pinned table of arms, outcomes and raw covariates."""

from sortition.data.experiment import ExperimentData
from sortition.data.validation import OUTCOME_KINDS

__all__ = ["ExperimentData", "OUTCOME_KINDS"]
