import pytest


class FakeRule:
    """A stand-in for sortition.rules.Rule in tests that only need its flag JSON."""

    def __init__(self, conditions):
        self.conditions = conditions

    def to_json(self):
        return {"conditions": [dict(attribute=a, operator=o, value=v) for a, o, v in self.conditions]}

    def describe(self):
        return " AND ".join(f"{a} {o} {v}" for a, o, v in self.conditions)


@pytest.fixture
def fake_rule():
    return FakeRule


import numpy as np
import pandas as pd

from sortition.experiment import CELLS


def draw_round(plan, scenario, n, rng, round_index, prefix="s"):
    """Assign n fresh visitors by the plan's probabilities (first matching segment serves)."""
    visitors = scenario.sample_visitors(n, rng)
    assigned = np.zeros(n, bool)
    arm = np.empty(n, dtype=object)
    cell = np.empty(n, dtype=object)
    prop = np.zeros(n)
    for seg in (*plan.segments, plan.default):
        mask = np.ones(n, bool) if seg.rule is None else np.asarray(seg.rule.mask(visitors), bool)
        mask &= ~assigned
        assigned |= mask
        pairs = [(c, a, seg.cells[c][a]) for c in CELLS for a in plan.arms]
        p = np.array([w for _, _, w in pairs])
        pick = rng.choice(len(pairs), size=int(mask.sum()), p=p / p.sum())
        cell[mask] = [pairs[i][0] for i in pick]
        arm[mask] = [pairs[i][1] for i in pick]
        prop[mask] = [seg.arm_probabilities[pairs[i][1]] for i in pick]
    arm_index = np.array([plan.arms.index(a) for a in arm])
    y = scenario.sample_outcomes(visitors, arm_index, rng)
    head = pd.DataFrame(
        {
            "subject": [f"{prefix}{round_index}-{i}" for i in range(n)],
            "arm": arm.astype(str),
            "outcome": y,
            "propensity": prop,
            "cell": cell.astype(str),
            "round": round_index,
        }
    )
    return pd.concat([head, visitors], axis=1), scenario.truth(visitors)
