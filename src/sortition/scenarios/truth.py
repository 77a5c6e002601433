"""Truth: what a synthetic experiment really did. Evaluation code reads it; analysis code never does."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sortition.policy.arms import best_arms


@dataclass(frozen=True, eq=False)
class Truth:
    """Per-visitor ground truth for one generated data set.

    Attributes:
        arms: arm names, control first.
        outcome_kind: 'continuous' | 'binary' | 'revenue'.
        expected: (n, K) expected outcome of every visitor under every arm, metric units.
        conversion: (n, K) conversion probabilities (binary and revenue), else None.
        order_value: (n, K) expected order value given conversion (revenue), else None.
    """

    arms: tuple
    outcome_kind: str
    expected: np.ndarray
    conversion: np.ndarray | None = None
    order_value: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.expected.shape[0])

    @property
    def contrasts(self) -> np.ndarray:
        """(n, K-1) true effects, arm k minus control."""
        return self.expected[:, 1:] - self.expected[:, :1]

    @property
    def ate(self) -> np.ndarray:
        """(K-1,) average effect over these visitors (the sample average treatment effect)."""
        return self.contrasts.mean(axis=0)

    @property
    def optimal_arm(self) -> np.ndarray:
        """(n,) index of each visitor's best arm by the one best-arm rule
        (:func:`~sortition.policy.best_arms`: ties go to the lowest index, control first)."""
        return best_arms(self.contrasts)

    def subset(self, rows: np.ndarray) -> Truth:
        take = lambda a: None if a is None else a[rows]  # noqa: E731
        return Truth(self.arms, self.outcome_kind, self.expected[rows], take(self.conversion), take(self.order_value))
