"""Results returned by the Client: typed values with evaluation details (frozen)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

# Flag evaluation codes (as in Eppo's test vectors).
MATCH = "MATCH"
FLAG_UNRECOGNIZED_OR_DISABLED = "FLAG_UNRECOGNIZED_OR_DISABLED"
DEFAULT_ALLOCATION_NULL = "DEFAULT_ALLOCATION_NULL"
ASSIGNMENT_ERROR = "ASSIGNMENT_ERROR"
TYPE_MISMATCH = "TYPE_MISMATCH"


@dataclass(frozen=True, slots=True)
class AllocationDetail:
    key: str
    code: str
    order_position: int  # from 1

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "allocationEvaluationCode": self.code, "orderPosition": self.order_position}


@dataclass(frozen=True, slots=True)
class AssignmentDetails:
    """The value served and why (``code``/``description`` as Eppo's SDKs report them)."""

    value: Any
    flag_key: str
    subject_key: str
    code: str
    description: str
    variation_key: str | None = None
    variation_value: Any = None
    matched_rule: dict | None = None
    matched_allocation: AllocationDetail | None = None
    unmatched_allocations: tuple[AllocationDetail, ...] = ()
    unevaluated_allocations: tuple[AllocationDetail, ...] = ()
    environment_name: str | None = None
    bandit_key: str | None = None
    bandit_action: str | None = None

    @property
    def is_default(self) -> bool:
        return self.code != MATCH

    def to_dict(self) -> dict[str, Any]:
        """The ``evaluationDetails`` object of Eppo's test vectors."""
        return {
            "environmentName": self.environment_name,
            "flagEvaluationCode": self.code,
            "flagEvaluationDescription": self.description,
            "banditKey": self.bandit_key,
            "banditAction": self.bandit_action,
            "variationKey": self.variation_key,
            "variationValue": self.variation_value,
            "matchedRule": self.matched_rule,
            "matchedAllocation": None if self.matched_allocation is None else self.matched_allocation.to_dict(),
            "unmatchedAllocations": [a.to_dict() for a in self.unmatched_allocations],
            "unevaluatedAllocations": [a.to_dict() for a in self.unevaluated_allocations],
        }


class BanditResult(NamedTuple):
    """``variation`` (the flag's string value, or the default) and ``action`` (None when no
    bandit applies). ``details`` is set by ``get_bandit_action_details``; ``evaluation`` (a
    :class:`~sortition.serving.bandits.BanditEvaluation`: score, weight, gap) when an action was
    chosen. An immutable record (NamedTuple), so ``variation, action, *_ = result`` works."""

    variation: str
    action: str | None
    details: AssignmentDetails | None = None
    evaluation: Any = None
