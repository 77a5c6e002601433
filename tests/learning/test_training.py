"""Training recovers known coefficients from simulated logs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sortition.learning import BanditEvents, SqrtGamma, train_bandit
from sortition.learning.environment import make_environment
from sortition.learning.features import fit_layout
from sortition.learning.training import ridge


def uniform_logs(env, n, seed):
    return env.log_events(n, seed)[0]


def _terms(coefs, group):
    return {t[0]: t for t in getattr(coefs, group)}


def test_recovers_numeric_categorical_and_missing_coefficients(env):
    ev = uniform_logs(env, 12_000, seed=1)
    model = train_bandit(ev, l2=1e-3, importance_weighting="none")
    for key, true in env.truth.coefficients.items():
        fit = model.coefficients[key]
        t_num, f_num = _terms(true, "subject_numeric"), _terms(fit, "subject_numeric")
        for attr in ("age", "visits"):
            assert f_num[attr][1] == pytest.approx(t_num[attr][1], abs=0.015), (key, attr)
            # the missing coefficient is identified against the intercept: compare the score of a
            # subject with this attribute absent, everything else fixed at the reference
        t_cat, f_cat = _terms(true, "subject_categorical"), _terms(fit, "subject_categorical")
        for attr in ("country", "device"):
            _, tv, tm = t_cat[attr]
            _, fv, fm = f_cat[attr]
            # one-hot + missing + intercept are collinear: only contrasts are identified
            ref = min(tv)
            for v in tv:
                assert fv[v] - fv[ref] == pytest.approx(tv[v] - tv[ref], abs=0.05), (key, attr, v)
            assert fm - fv[ref] == pytest.approx(tm - tv[ref], abs=0.06), (key, attr, "missing")


def test_scores_match_truth_including_missing_values(env):
    ev = uniform_logs(env, 12_000, seed=2)
    model = train_bandit(ev, l2=1e-3)
    rng = np.random.default_rng(3)
    ctx = env.sample_contexts(400, rng)
    truth_q = env.expected_rewards(ctx)
    fitted = type(env)(model, env.actions, env.reward).expected_rewards(ctx)
    assert np.abs(fitted - truth_q).max() < 0.12
    # subjects with every attribute missing are scored by the missing coefficients alone
    from sortition.learning.environment import Contexts

    empty = Contexts(("x",), ({},), ({},))
    assert np.allclose(
        type(env)(model, env.actions).expected_rewards(empty), env.expected_rewards(empty), atol=0.1
    )


def test_binary_rewards_give_a_linear_probability_model():
    env = make_environment(n_actions=2, seed=3, reward="binary", missing_rate=0.0)
    ev = uniform_logs(env, 20_000, seed=4)
    assert set(np.unique(ev.reward)) <= {0.0, 1.0}
    model = train_bandit(ev, l2=1e-3)
    ctx = env.sample_contexts(300, np.random.default_rng(5))
    fitted = type(env)(model, env.actions, "binary").expected_rewards(ctx)
    assert np.abs(fitted - env.expected_rewards(ctx)).mean() < 0.03


def test_importance_weighting_targets_the_whole_population():
    """Misspecified model (quadratic truth, linear fit) and a logger that picks the action mostly
    for large x: the 1/p-weighted fit predicts the population mean reward; the unweighted one
    is pulled towards where the logger acted."""
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.normal(0, 1, n)
    p_a = np.where(x > 0, 0.9, 0.1)
    chose_a = rng.random(n) < p_a
    reward = x**2 + rng.normal(0, 0.1, n)
    rows = [
        {
            "action": "a" if c else "b",
            "reward": float(r),
            "action_probability": float(p if c else 1 - p),
            "subject_numeric_attributes": {"x": float(xi)},
        }
        for c, r, p, xi in zip(chose_a, reward, p_a, x, strict=True)
    ]
    ev = BanditEvents.from_records(rows)
    truth = 1.0  # E[x^2]
    pop = {"x": x}  # population mean prediction = intercept + slope * mean(x)

    def population_mean(model):
        c = model.coefficients["a"]
        _, slope, _ = c.subject_numeric[0]
        return c.intercept + slope * pop["x"].mean()

    weighted = population_mean(train_bandit(ev, l2=1e-6, importance_weighting="ips"))
    plain = population_mean(train_bandit(ev, l2=1e-6, importance_weighting="none"))
    assert abs(weighted - truth) < 0.1
    assert abs(plain - truth) > 2 * abs(weighted - truth)


def test_standardization_is_undone_exactly():
    """The raw-unit coefficients reproduce the fitted values of the standardized design."""
    rng = np.random.default_rng(1)
    rows = [{"x": float(v)} if rng.random() > 0.2 else {} for v in rng.normal(50, 9, 300)]
    num = {"subject": rows, "action": [{}] * 300}
    cat = {"subject": [{}] * 300, "action": [{}] * 300}
    layout = fit_layout(num, cat)
    X = layout.encode(num, cat)
    y = rng.normal(size=300)
    beta = ridge(X, y, np.ones(300), 0.5, layout.penalized())
    raw = layout.coefficients(beta)
    ((_key, coef, missing),) = raw["subject_numeric"]
    pred = [raw["intercept"] + (r["x"] * coef if "x" in r else missing) for r in rows]
    assert np.allclose(pred, X @ beta)


def test_gamma_schedule_and_defaults(env):
    ev = uniform_logs(env, 400, seed=5)
    model = train_bandit(ev, gamma=SqrtGamma(0.5), action_probability_floor=0.2)
    assert model.gamma == pytest.approx(0.5 * math.sqrt(400))
    assert model.action_probability_floor == 0.2
    assert model.n_events == 400 and model.model_version == "400"
    assert model.default_action_score == pytest.approx(ev.reward.mean())
    assert train_bandit(ev, gamma=3.0).gamma == 3.0


def test_actions_with_too_few_events_fall_back_to_the_default_score(env):
    ev = uniform_logs(env, 300, seed=6)
    rare = ev.take(ev.action != "action_2")
    keep = np.concatenate([np.flatnonzero(ev.action == "action_2")[:3]])
    both = BanditEvents.from_records(
        [
            {"action": a, "reward": r, "action_probability": p}
            for a, r, p in zip(
                np.concatenate([rare.action, ev.action[keep]]),
                np.concatenate([rare.reward, ev.reward[keep]]),
                np.concatenate([rare.action_probability, ev.action_probability[keep]]),
                strict=True,
            )
        ]
    )
    model = train_bandit(both, min_events_per_action=5)
    assert "action_2" not in model.coefficients and "action_0" in model.coefficients


@pytest.mark.parametrize(
    "record, message",
    [
        ({"action": "a", "reward": 1.0}, "action_probability"),
        ({"action": "a", "reward": 1.0, "action_probability": 0.0}, "(0, 1]"),
        ({"action": "a", "reward": float("nan"), "action_probability": 0.5}, "reward is not finite"),
        (
            {"action": "a", "reward": 1.0, "action_probability": 0.5, "subjectNumericAttributes": 3},
            "expected a dict",
        ),
    ],
)
def test_bad_events_are_rejected_with_the_field_named(record, message):
    with pytest.raises(
        (ValueError, TypeError),
        match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]"),
    ):
        train_bandit([record])


def test_bad_parameters_are_rejected(env):
    ev = uniform_logs(env, 50, seed=0)
    with pytest.raises(ValueError, match="action_probability_floor"):
        train_bandit(ev, action_probability_floor=1.5)
    with pytest.raises(ValueError, match="gamma"):
        train_bandit(ev, gamma=-1.0)
    with pytest.raises(ValueError, match="importance_weighting"):
        train_bandit(ev, importance_weighting="dr")
    with pytest.raises(TypeError, match="events is"):
        train_bandit(42)


def test_camel_case_events_and_frames_are_accepted(env):
    import pandas as pd

    records = [
        {
            "actionKey": "a" if i % 2 else "b",
            "reward": float(i % 3),
            "actionProbability": 0.5,
            "subjectNumericAttributes": {"x": float(i)},
            "subjectCategoricalAttributes": {"c": "u" if i % 4 else "v"},
        }
        for i in range(40)
    ]
    a = train_bandit(records, model_version="1", l2=0.5)
    b = train_bandit(pd.DataFrame(records), model_version="1", l2=0.5)
    assert a.model_data() == b.model_data()


def test_ridge_leaves_columns_without_data_out_of_the_solve():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    X[:, 0] = 1.0
    X[:, [2, 4]] = 0.0  # e.g. the missing indicators of attributes always present
    y, w = rng.normal(size=40), rng.uniform(0.5, 2.0, 40)
    penalized = np.array([False, True, True, True, True])
    beta = ridge(X, y, w, 0.7, penalized)
    assert beta[2] == 0.0 and beta[4] == 0.0
    keep = [0, 1, 3]
    Xk = X[:, keep]
    expected = np.linalg.solve(Xk.T @ (Xk * w[:, None]) + np.diag([0.0, 0.7, 0.7]), (Xk * w[:, None]).T @ y)
    np.testing.assert_allclose(beta[keep], expected, rtol=1e-9)
    assert not ridge(np.zeros((3, 2)), np.ones(3), np.ones(3), 1.0, np.array([False, True])).any()
