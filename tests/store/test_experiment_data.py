"""EventStore.experiment_data: the join as a validated ExperimentData."""

from __future__ import annotations

import numpy as np
import pytest

from store._events import assignment, outcome


def test_experiment_data_from_logged_exposures(store):
    rng = np.random.default_rng(5)
    events, outcomes = [], []
    for i in range(60):
        arm = ["control", "blue", "green"][i % 3]
        events.append(assignment(f"u{i}", arm, i, cell="explore", propensity="0.3333", round=str(1 + i // 30),
                                 attributes={"country": ["US", "CA"][i % 2], "age": int(rng.integers(18, 70))}))
        if i % 4:
            outcomes.append(outcome(f"u{i}", float(i), i + 1))
    store.append(assignments=events, outcomes=outcomes)
    data = store.experiment_data("flag", "revenue", control="control")
    assert data.arms[0] == "control" and set(data.arms) == {"control", "blue", "green"} and data.n == 60
    assert data.outcome[1] == 1.0 and data.outcome[4] == 0.0
    assert np.allclose(data.propensity, 0.3333) and set(data.round.tolist()) == {1, 2}
    assert set(data.covariate_names) == {"country", "age"}
    assert data.arms[data.arm_index[2]] == "green"


def test_mixed_propensity_logging_is_refused(store):
    store.append_assignments([assignment("u1", propensity="0.5"), assignment("u2", minutes=1)])
    with pytest.raises(ValueError, match=r"1 of 2 exposures to 'flag' have no 'propensity'.*\['u2'\]"):
        store.experiment_data("flag", "revenue")
    with pytest.raises(ValueError, match="no exposures to flag 'other'"):
        store.experiment_data("other", "revenue")
