"""Request-time evaluation: Eppo-compatible flags and contextual bandits.

Nothing here imports offline code (pandas, stochtree, ...); numpy is imported only by the
batch call.

>>> from sortition.serving import Configuration, Client
>>> client = Client(Configuration.from_json(open("flags.json").read()))  # doctest: +SKIP
>>> client.get_assignment("new-user-onboarding", "alice", {"country": "FR"}, "control")  # doctest: +SKIP
"""

from sortition.serving.attributes import Attributes
from sortition.serving.bandits import BanditEvaluation, BanditModel, evaluate_bandit, parse_bandit_model
from sortition.serving.client import Client
from sortition.serving.configuration import Configuration
from sortition.serving.events import AssignmentLogger, BanditLogger
from sortition.serving.results import AllocationDetail, AssignmentDetails, BanditResult
from sortition.serving.validation import ConfigurationError

__all__ = [
    "AllocationDetail",
    "AssignmentDetails",
    "AssignmentLogger",
    "Attributes",
    "BanditEvaluation",
    "BanditLogger",
    "BanditModel",
    "BanditResult",
    "Client",
    "Configuration",
    "ConfigurationError",
    "evaluate_bandit",
    "parse_bandit_model",
]
