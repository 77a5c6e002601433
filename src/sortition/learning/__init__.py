"""Learning from logged bandit events: train the models the evaluator serves, and evaluate
policies off-line (``sortition.learning.ope``)."""

from sortition.learning.events import BanditEvents
from sortition.learning.model import (
    BanditModel,
    bandit_flags_json,
    bandit_models_json,
    link_bandit,
    load_bandit_models,
)
from sortition.learning.training import SqrtGamma, cold_start_model, train_bandit

__all__ = [
    "BanditEvents",
    "BanditModel",
    "SqrtGamma",
    "bandit_flags_json",
    "bandit_models_json",
    "cold_start_model",
    "link_bandit",
    "load_bandit_models",
    "train_bandit",
]
