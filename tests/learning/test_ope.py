"""Off-policy estimators: unbiased, with intervals that cover the known truth near nominal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sortition.learning import train_bandit
from sortition.learning.environment import policy_probabilities
from sortition.learning.ope import (
    DM,
    DR,
    IPS,
    SNIPS,
    IntervalSettings,
    OffPolicyData,
    OverlapWarning,
    candidate_data,
    evaluate,
    plan_data,
    plan_probabilities,
    segment_labels,
)

K = 3


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _q(x):
    return np.stack([0.5 + 0.3 * x, 0.7 - 0.4 * x, 0.4 + 0.2 * x], axis=1)


def _mu(x):
    return _softmax(np.stack([0.5 * x, 0.3 - x, 0.2 + 0 * x], axis=1))


def _pi(x):
    return _softmax(np.stack([3 * x, 1.5 - 3 * x, 0 * x], axis=1))


TRUTH = float((_pi(g := (np.arange(200_000) + 0.5) / 200_000) * _q(g)).sum(axis=1).mean())


def _logs(seed, n, q_bias=0.0):
    """Logged events with Bernoulli rewards; the reward model is off by ``q_bias``."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    mu, pi, q = _mu(x), _pi(x), _q(x)
    a = (rng.random(n)[:, None] > np.cumsum(mu, axis=1)).sum(axis=1)
    rows = np.arange(n)
    r = (rng.random(n) < q[rows, a]).astype(float)
    qhat = q + q_bias
    return OffPolicyData(
        reward=r,
        logging_probability=mu[rows, a],
        target_probability=pi[rows, a],
        expected_reward_logged=qhat[rows, a],
        expected_reward_target=(pi * qhat).sum(axis=1),
    )


@pytest.fixture(scope="module")
def normal_runs():
    seeds = 400
    out = {name: np.empty((seeds, 3)) for name in ("IPS", "SNIPS", "DR", "DM")}
    s = IntervalSettings(interval="normal")
    for seed in range(seeds):
        data = _logs(seed, 1000, q_bias=0.1)  # a wrong reward model: DR must not care
        for name, est in (("IPS", IPS(s)), ("SNIPS", SNIPS(s)), ("DR", DR(s)), ("DM", DM(s))):
            e = est.estimate(data)
            out[name][seed] = e.value, e.lower, e.upper
    return out


@pytest.mark.parametrize("name", ["IPS", "SNIPS", "DR"])
def test_estimates_are_unbiased_and_normal_intervals_cover_near_nominal(normal_runs, name):
    runs = normal_runs[name]
    values = runs[:, 0]
    assert abs(values.mean() - TRUTH) < 4 * values.std() / np.sqrt(len(values))
    coverage = np.mean((runs[:, 1] <= TRUTH) & (TRUTH <= runs[:, 2]))
    assert 0.91 <= coverage <= 0.985, coverage


def test_direct_method_inherits_the_reward_models_bias(normal_runs):
    dm = normal_runs["DM"]
    assert dm[:, 0].mean() - TRUTH == pytest.approx(0.1, abs=0.01)
    assert np.mean((dm[:, 1] <= TRUTH) & (TRUTH <= dm[:, 2])) < 0.2


def test_dr_with_a_good_reward_model_is_tighter_than_ips():
    data = _logs(0, 2000)
    ips, dr = IPS().estimate(data), DR().estimate(data)
    assert dr.std_error < 0.8 * ips.std_error


@pytest.mark.parametrize("name, est", [("IPS", IPS), ("SNIPS", SNIPS), ("DR", DR)])
def test_bootstrap_intervals_cover_near_nominal(name, est):
    seeds = 120
    hits = 0
    for seed in range(seeds):
        e = est(IntervalSettings(interval="bootstrap", n_bootstrap=200, seed=seed)).estimate(
            _logs(seed, 500, 0.1)
        )
        assert e.interval == "bootstrap" and e.lower < e.value < e.upper
        hits += e.covers(TRUTH)
    assert 0.87 <= hits / seeds <= 1.0, hits / seeds


def test_overlap_warning_when_candidate_acts_where_logger_did_not():
    rng = np.random.default_rng(0)
    n = 2000
    rare = rng.random(n) < 0.02  # the logger chose the candidate's action with p = 0.01
    data = OffPolicyData(
        reward=rng.random(n),
        logging_probability=np.where(rare, 0.01, 0.99),
        target_probability=np.where(rare, 1.0, 0.0),
    )
    with pytest.warns(OverlapWarning, match="effective sample size"):
        e = IPS().estimate(data)
    assert e.effective_sample_size < 0.05 * n and e.warnings
    same = OffPolicyData(
        reward=data.reward,
        logging_probability=data.logging_probability,
        target_probability=data.logging_probability,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverlapWarning)
        assert IPS().estimate(same).warnings == ()
        assert IPS().estimate(same).effective_sample_size == pytest.approx(n)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="logging_probability must be in"):
        OffPolicyData(reward=[1.0], logging_probability=[0.0], target_probability=[1.0])
    with pytest.raises(ValueError, match="target_probability has 2 rows"):
        OffPolicyData(reward=[1.0], logging_probability=[0.5], target_probability=[1.0, 0.0])
    with pytest.raises(ValueError, match="DR needs a reward model"):
        DR().estimate(OffPolicyData(reward=[1.0], logging_probability=[0.5], target_probability=[1.0]))
    with pytest.raises(ValueError, match="interval"):
        IntervalSettings(interval="wald")


# ----------------------------------------------------------------- allocation plans

SEG_Q = {"young": {"control": 0.10, "a": 0.20, "b": 0.05}, "old": {"control": 0.30, "a": 0.10, "b": 0.35}}
SEG_P = {"young": 0.6, "old": 0.4}
LOGGER = {"young": {"control": 0.5, "a": 0.25, "b": 0.25}, "old": {"control": 0.5, "a": 0.25, "b": 0.25}}
PLAN = {"young": {"control": 0.2, "a": 0.7, "b": 0.1}, "old": {"control": 0.2, "a": 0.1, "b": 0.7}}
PLAN_TRUTH = sum(SEG_P[s] * sum(w * SEG_Q[s][a] for a, w in PLAN[s].items()) for s in SEG_P)


def _plan_logs(seed, n):
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    seg = segment_labels(None, [("young", age < np.quantile(age, 0.6))], default="old")
    arms = np.array(["control", "a", "b"], dtype=object)
    arm = np.array([rng.choice(arms, p=[LOGGER[s][a] for a in arms]) for s in seg], dtype=object)
    p = plan_probabilities(seg, arm, LOGGER)
    r = (rng.random(n) < [SEG_Q[s][a] for s, a in zip(seg, arm, strict=True)]).astype(float)
    return r, p, seg, arm


def test_plan_evaluation_covers_the_plans_true_value():
    hits = {"IPS": 0, "SNIPS": 0, "DR": 0}
    seeds = 150
    for seed in range(seeds):
        r, p, seg, arm = _plan_logs(seed, 1500)
        est = evaluate(plan_data(r, p, seg, arm, PLAN))
        for k in hits:
            hits[k] += est[k].covers(PLAN_TRUTH)
    for k, h in hits.items():
        assert 0.89 <= h / seeds <= 0.995, (k, h / seeds)


def test_plan_probabilities_and_unsupported_arms():
    seg = np.array(["young", "old", "old"], dtype=object)
    arm = np.array(["a", "b", "control"], dtype=object)
    assert plan_probabilities(seg, arm, PLAN).tolist() == [0.7, 0.7, 0.2]
    with pytest.raises(ValueError, match="sum to 1"):
        plan_probabilities(seg, arm, {"young": {"a": 0.5}, "old": {"a": 1.0}})
    with pytest.raises(ValueError, match="no split for segments"):
        plan_probabilities(seg, arm, {"young": {"a": 1.0}})
    r, p, sg, ar = _plan_logs(0, 800)
    keep = ~((sg == "old") & (ar == "b"))  # the logger never showed b to old subjects
    with pytest.warns(OverlapWarning, match="never chose"):
        e = IPS().estimate(plan_data(r[keep], p[keep], sg[keep], ar[keep], PLAN))
    assert any("never chose" in w for w in e.warnings)


def test_segment_labels_first_match_wins():
    a = np.array([True, True, False, False])
    b = np.array([False, True, True, False])
    assert segment_labels(None, [("a", a), ("b", b)]).tolist() == ["a", "a", "b", "default"]


# ----------------------------------------------------------------- candidate bandit models


def test_candidate_model_value_is_estimated_through_the_serving_evaluator(env):
    logs, _, _ = env.log_events(3000, seed=11)  # uniform logger
    candidate = train_bandit(env.log_events(1500, seed=12)[0], gamma=4.0, action_probability_floor=0.1)
    # truth: the candidate's expected reward on the population, from a large fresh sample
    ctx = env.sample_contexts(8000, np.random.default_rng(13))
    truth = float(
        (policy_probabilities(candidate, ctx, env.offered()) * env.expected_rewards(ctx)).sum(1).mean()
    )
    uniform_value = float(env.expected_rewards(ctx).mean())
    data = candidate_data(logs, candidate)
    est = evaluate(data)
    assert set(est) == {"IPS", "SNIPS", "DM", "DR"}
    for name in ("IPS", "SNIPS", "DR"):
        assert abs(est[name].value - truth) < 4 * est[name].std_error, name
    assert est["DR"].std_error < est["IPS"].std_error
    assert est["DR"].lower > uniform_value  # the candidate clearly beats what was logged
    with pytest.raises(ValueError, match="offered"):
        candidate_data(
            logs.take(np.arange(5)).__class__(**{**logs.take(np.arange(5)).__dict__, "offered": None}),
            candidate,
        )


def test_candidate_acting_where_a_greedy_logger_never_did_is_flagged(env):
    greedy = train_bandit(env.log_events(1500, seed=21)[0], gamma=1e6, action_probability_floor=0.0)
    logs, _, _ = env.log_events(600, seed=22, logging_model=greedy)
    uniform = train_bandit(logs, gamma=0.0)  # gamma 0: every action 1/K
    with pytest.warns(OverlapWarning, match="never chose"):
        est = IPS().estimate(candidate_data(logs, uniform, reward_model=None, logging_model=greedy))
    assert any("never chose" in w for w in est.warnings)
    same = candidate_data(logs, greedy, reward_model=None, logging_model=greedy)
    assert same.unsupported_mass is not None and same.unsupported_mass.mean() < 0.01
    assert not any("never chose" in w for w in IPS().estimate(same).warnings)
