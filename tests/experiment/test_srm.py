"""The sample-ratio check: exact statistics, no alarms on healthy data, alarms on broken splits."""

import numpy as np
import pandas as pd
import pytest

from sortition.experiment.cells import CELLS, uniform_plan
from sortition.experiment.srm import chi_square, srm_plan, srm_propensity


def test_chi_square_matches_the_textbook_values():
    assert chi_square([50, 50], [0.5, 0.5]) == (0.0, 1.0)
    statistic, p = chi_square([60, 40], [1, 1])
    assert statistic == pytest.approx(4.0) and p == pytest.approx(0.0455003, rel=1e-5)
    assert chi_square([10, 1], [1.0, 0.0]) == (float("inf"), 0.0)  # a row where the plan gives 0
    assert chi_square([7], [1.0]) == (0.0, 1.0)


def _served(plan, n, rng, drop=None):
    seg = plan.segments[0]
    pairs = [(c, a, seg.cells[c][a]) for c in CELLS for a in plan.arms]
    p = np.array([w for *_, w in pairs])
    pick = rng.choice(len(pairs), size=n, p=p / p.sum())
    rows = pd.DataFrame({"cell": [pairs[i][0] for i in pick], "arm": [pairs[i][1] for i in pick], "round": 0})
    if drop is not None:
        arm, share = drop
        lost = (rows["arm"] == arm).to_numpy() & (rng.random(n) < share)
        rows = rows[~lost].reset_index(drop=True)
    return rows


def test_the_plan_check_is_quiet_on_healthy_rounds_and_fires_on_lost_exposures():
    plan = uniform_plan(("control", "a", "b"))
    rng = np.random.default_rng(0)
    healthy = [srm_plan([plan], _served(plan, 2000, rng)) for _ in range(30)]
    assert all(r.ok for r in healthy) and all(len(r.checks) == 3 for r in healthy)
    broken = srm_plan([plan], _served(plan, 2000, rng, drop=("b", 0.3)))
    assert not broken.ok and any("b" in c.observed for c in broken.failed)
    assert "sample-ratio mismatch" in broken.describe()
    wrong_cell = _served(plan, 500, rng)
    wrong_cell.loc[0, ["cell", "arm"]] = ["control", "a"]  # the control cell only ever serves control
    assert not srm_plan([plan], wrong_cell).ok


def test_the_propensity_check_is_quiet_when_propensities_are_right_and_fires_when_not():
    rng = np.random.default_rng(1)
    n, p = 3000, np.array([0.2, 0.3, 0.5])
    arm = rng.choice(3, size=n, p=p)
    healthy = [srm_propensity(a, p[a], ["c", "a", "b"]) for a in (rng.choice(3, size=n, p=p) for _ in range(30))]
    assert all(r.ok for r in healthy)
    logged_wrong = srm_propensity(arm, np.full(n, 1 / 3), ["c", "a", "b"])  # logged uniform, served 20/30/50
    assert not logged_wrong.ok and logged_wrong.method == "propensity"
