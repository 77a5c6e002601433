"""The adaptive loop: cells, schedules, sequential experiments, export of plans to flags."""

from sortition.experiment.cells import CELLS, CellWeights, Plan, SegmentPlan, ShardBlock, make_plan, uniform_plan
from sortition.experiment.export import (
    TOTAL_SHARDS,
    carry_layout,
    experiment_salt,
    largest_remainder,
    plan_to_configuration,
    plan_to_flag,
    served_probabilities,
    shard_arms,
    shard_layout,
)
from sortition.experiment.persistence import STATE_VERSION
from sortition.experiment.results import CellObservation, Graduation, Lift, RoundResult, SegmentResult
from sortition.experiment.schedules import Schedule, explicit, fixed, geometric
from sortition.experiment.sequential import (
    SequentialExperiment,
    expected_loss,
    load_experiment,
    save_experiment,
    sequential_experiment,
)
from sortition.experiment.state import ExperimentState

__all__ = [
    "CELLS",
    "TOTAL_SHARDS",
    "CellObservation",
    "CellWeights",
    "ExperimentState",
    "Graduation",
    "Lift",
    "Plan",
    "RoundResult",
    "Schedule",
    "STATE_VERSION",
    "SegmentPlan",
    "SegmentResult",
    "ShardBlock",
    "SequentialExperiment",
    "carry_layout",
    "expected_loss",
    "experiment_salt",
    "explicit",
    "fixed",
    "geometric",
    "largest_remainder",
    "load_experiment",
    "make_plan",
    "plan_to_configuration",
    "plan_to_flag",
    "save_experiment",
    "sequential_experiment",
    "served_probabilities",
    "shard_arms",
    "shard_layout",
    "uniform_plan",
]
