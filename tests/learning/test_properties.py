"""Properties: the training encoding mirrors the serving scorer; JSON round-trips; IPS identities."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.learning import BanditModel, train_bandit
from sortition.learning.features import fit_layout
from sortition.learning.ope import IPS, SNIPS, OffPolicyData
from sortition.learning.training import importance_weights, ridge
from sortition.serving.attributes import Attributes
from sortition.serving.bandits import score_action

numeric_values = st.one_of(
    st.none(),
    st.integers(-50, 50),
    st.floats(-100, 100, allow_nan=False),
    st.just(float("nan")),
    st.just(float("inf")),
    st.booleans(),
    st.text(max_size=2),
)
categorical_values = st.one_of(
    st.none(), st.sampled_from(["a", "b", "", "1"]), st.integers(0, 2), st.booleans(), st.just(1.0)
)
num_group = st.dictionaries(st.sampled_from(["x", "y"]), numeric_values, max_size=2)
cat_group = st.dictionaries(st.sampled_from(["c", "d"]), categorical_values, max_size=2)
event = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["p", "q"]),
        "reward": st.floats(-5, 5, allow_nan=False),
        "action_probability": st.floats(0.05, 1.0),
        "subject_numeric_attributes": num_group,
        "subject_categorical_attributes": cat_group,
        "action_numeric_attributes": num_group,
        "action_categorical_attributes": cat_group,
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=2, max_size=25), st.floats(0.01, 5.0))
def test_published_model_scores_what_the_fit_predicts(records, l2):
    """For every training event, serving's score of the published model equals the fitted value
    of the design matrix: missing/unknown values, JS stringification and standardization agree."""
    model = train_bandit(records, l2=l2)
    served = BanditModel.from_json(json.loads(json.dumps(model.to_json()))).serving_model()
    for action in {r["action"] for r in records}:
        rows = [r for r in records if r["action"] == action]
        num = {
            "subject": [r["subject_numeric_attributes"] for r in rows],
            "action": [r["action_numeric_attributes"] for r in rows],
        }
        cat = {
            "subject": [r["subject_categorical_attributes"] for r in rows],
            "action": [r["action_categorical_attributes"] for r in rows],
        }
        layout = fit_layout(num, cat)
        X = layout.encode(num, cat)
        p = np.array([r["action_probability"] for r in rows])
        w = importance_weights(p, "ips", 20.0)
        beta = ridge(X, np.array([r["reward"] for r in rows]), w / w.mean(), l2, layout.penalized())
        for i, r in enumerate(rows):
            s = score_action(
                served,
                Attributes(r["subject_numeric_attributes"], r["subject_categorical_attributes"]),
                action,
                Attributes(r["action_numeric_attributes"], r["action_categorical_attributes"]),
            )
            assert np.isclose(s, X[i] @ beta, atol=1e-6 * (1 + abs(s)))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 10), st.floats(0.01, 1.0)), min_size=2, max_size=40))
def test_evaluating_the_logging_policy_returns_the_logged_mean(rows):
    r = np.array([a for a, _ in rows])
    p = np.array([b for _, b in rows])
    data = OffPolicyData(reward=r, logging_probability=p, target_probability=p)
    assert np.isclose(IPS().estimate(data).value, r.mean())
    assert np.isclose(SNIPS().estimate(data).value, r.mean())
    assert np.isclose(data.effective_sample_size(), len(rows))
