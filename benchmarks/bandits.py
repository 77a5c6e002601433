"""Contextual bandits: Sortition beside Open Bandit Pipeline (obp) and Vowpal Wabbit, same logs.

Three measurements, each on simulated logs whose true values are known:
1. Off-policy evaluation of a candidate bandit model (IPS, SNIPS, DM, DR): error against the
   candidate's true value, interval coverage (95% nominal), time per estimate; beside obp 0.4.1.
2. Training on logged events: time and the greedy policy's true value; beside VW
   (cb_explore_adf --squarecb, one pass over the same logs).
3. The online loop, per round: expected reward per subject of Sortition (retrained each round
   from the event store, served by its Client) and of VW (cb_explore_adf --squarecb, learning
   online), on the same subjects, with uniform and oracle.

Run: python benchmarks/bandits.py [--reps 50 --n 5000 --rounds 8 --subjects 500]
Peers are optional (the `bench` extra installs vowpalwabbit). obp 0.4.1's pinned dependencies do
not build on Python 3.11, so it is installed without them:
    pip install numpy scipy pandas scikit-learn matplotlib seaborn tqdm pyyaml mypy-extensions torch
    pip install --no-deps obp==0.4.1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.learning import SqrtGamma, train_bandit  # noqa: E402
from sortition.learning.environment import make_environment, policy_probabilities  # noqa: E402
from sortition.learning.ope import DM, DR, IPS, SNIPS, IntervalSettings, OffPolicyData  # noqa: E402
from sortition.learning.ope.candidates import crossfit_scores  # noqa: E402

OBP_HINT = (
    "obp not installed: skipping obp. Install with `pip install numpy scipy pandas scikit-learn matplotlib "
    "seaborn tqdm pyyaml mypy-extensions torch` then `pip install --no-deps obp==0.4.1` (its pinned "
    "dependencies do not build on Python 3.11)"
)
VW_HINT = (
    "vowpalwabbit not installed: skipping VW (pip install 'sortition[bench]' or pip install vowpalwabbit)"
)


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


# ------------------------------------------------------------------------------------------ OPE


def bench_ope(env, reps: int, n: int, bootstrap: int) -> None:
    print(f"\n== 1. off-policy evaluation of a candidate model: {reps} logs x {n} events, 4 actions ==")
    logger = train_bandit(env.log_events(300, seed=10_001)[0], gamma=2.0, action_probability_floor=0.5)
    candidate = train_bandit(env.log_events(3000, seed=10_002)[0], gamma=10.0, action_probability_floor=0.1)
    big = env.sample_contexts(40_000, np.random.default_rng(10_003))
    offered = env.offered()
    truth = float((policy_probabilities(candidate, big, offered) * env.expected_rewards(big)).sum(1).mean())
    logged_value = float(
        (policy_probabilities(logger, big, offered) * env.expected_rewards(big)).sum(1).mean()
    )
    print(f"true value: candidate {truth:.4f}, logging policy {logged_value:.4f}")
    try:
        from obp.ope import (
            DirectMethod,
            DoublyRobust,
            InverseProbabilityWeighting,
            SelfNormalizedInverseProbabilityWeighting,
        )

        obp_estimators = {
            "IPS": InverseProbabilityWeighting(),
            "SNIPS": SelfNormalizedInverseProbabilityWeighting(),
            "DM": DirectMethod(),
            "DR": DoublyRobust(),
        }
    except ImportError:
        print(OBP_HINT)
        obp_estimators = {}
    names = ("IPS", "SNIPS", "DM", "DR")
    ours = {k: cls for k, cls in zip(names, (IPS, SNIPS, DM, DR), strict=True)}
    rec: dict[str, dict[str, list]] = {
        k: {f: [] for f in ("s_val", "s_cov_n", "s_cov_b", "s_t_n", "s_t_b", "o_val", "o_cov", "o_t")}
        for k in names
    }
    keys = list(env.action_keys)
    for rep in range(reps):
        logs, ctx, _ = env.log_events(n, seed=rep, logging_model=logger)
        probs = policy_probabilities(candidate, ctx, offered)  # (n, K) via the serving evaluator
        qhat_rows = crossfit_scores(logs, seed=rep)
        qhat = np.array([[row[k] for k in keys] for row in qhat_rows])
        action = np.array([keys.index(a) for a in logs.action])
        rows = np.arange(n)
        data = OffPolicyData(
            reward=logs.reward,
            logging_probability=logs.action_probability,
            target_probability=probs[rows, action],
            expected_reward_logged=qhat[rows, action],
            expected_reward_target=(probs * qhat).sum(1),
        )
        for k in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                e_n = ours[k](IntervalSettings("normal")).estimate(data)
                t1 = time.perf_counter()
                e_b = ours[k](IntervalSettings("bootstrap", n_bootstrap=bootstrap, seed=rep)).estimate(data)
                t2 = time.perf_counter()
            r = rec[k]
            r["s_val"].append(e_n.value)
            r["s_cov_n"].append(e_n.covers(truth))
            r["s_cov_b"].append(e_b.covers(truth))
            r["s_t_n"].append(t1 - t0)
            r["s_t_b"].append(t2 - t1)
            if obp_estimators:
                est = obp_estimators[k]
                kw = {
                    "reward": logs.reward,
                    "action": action,
                    "pscore": logs.action_probability,
                    "action_dist": probs[:, :, None],
                }
                if k in ("DM", "DR"):
                    kw["estimated_rewards_by_reg_model"] = qhat[:, :, None]
                t0 = time.perf_counter()
                v = est.estimate_policy_value(**kw)
                ci = est.estimate_interval(**kw, alpha=0.05, n_bootstrap_samples=bootstrap, random_state=rep)
                t1 = time.perf_counter()
                r["o_val"].append(float(v))
                r["o_cov"].append(ci["95.0% CI (lower)"] <= truth <= ci["95.0% CI (upper)"])
                r["o_t"].append(t1 - t0)
    print(
        f"RMSE vs truth, coverage of 95% intervals (normal / bootstrap with {bootstrap} resamples), "
        "median time per estimate"
    )
    head = f"{'':6} {'RMSE':>8} {'cov-N':>6} {'cov-B':>6} {'ms N':>7} {'ms B':>7}"
    if obp_estimators:
        head += f" | {'obp RMSE':>8} {'obp cov-B':>9} {'obp ms B':>8} | {'time obp/ours(B)':>16} {'max |ours-obp|':>14}"
    print(head)
    for k in names:
        r = rec[k]
        s_val = np.array(r["s_val"])
        line = (
            f"{k:6} {np.sqrt(np.mean((s_val - truth) ** 2)):8.4f} {np.mean(r['s_cov_n']):6.2f} "
            f"{np.mean(r['s_cov_b']):6.2f} {_median_ms(r['s_t_n']):7.2f} {_median_ms(r['s_t_b']):7.2f}"
        )
        if obp_estimators:
            o_val = np.array(r["o_val"])
            line += (
                f" | {np.sqrt(np.mean((o_val - truth) ** 2)):8.4f} {np.mean(r['o_cov']):9.2f} "
                f"{_median_ms(r['o_t']):8.2f} | {_ratio(_median_ms(r['o_t']), _median_ms(r['s_t_b'])):>16} "
                f"{np.max(np.abs(o_val - s_val)):14.2e}"
            )
        print(line)


# ------------------------------------------------------------------------------------------- VW


def _vw_shared(num: dict, cat: dict) -> str:
    feats = []
    for k in ("age", "visits"):
        feats.append(f"{k}:{num[k]:g}" if k in num else f"{k}_missing")
    for k in ("country", "device"):
        feats.append(f"{k}={cat[k]}" if k in cat else f"{k}=missing")
    return "shared |s " + " ".join(feats)


def _vw_example(env, num: dict, cat: dict, label: tuple[int, float, float] | None = None) -> list[str]:
    lines = [_vw_shared(num, cat)]
    for j, key in enumerate(env.action_keys):
        prefix = f"0:{label[1]:g}:{label[2]:g} " if label is not None and label[0] == j else ""
        lines.append(f"{prefix}|a a={key}")
    return lines


def _vw(args: str):
    import vowpalwabbit

    return vowpalwabbit.Workspace(f"--cb_explore_adf --squarecb -q sa --quiet {args}")


def bench_training(env, n: int) -> None:
    print(
        f"\n== 2. training on {n} logged events (uniform logger), greedy policy value on 20000 new subjects =="
    )
    logs, ctx, _ = env.log_events(n, seed=20_001)
    test = env.sample_contexts(20_000, np.random.default_rng(20_002))
    q = env.expected_rewards(test)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model = train_bandit(logs, gamma=0.0)
        times.append(time.perf_counter() - t0)
    scores = policy_probabilities(model.__class__(**{**model.__dict__, "gamma": 1e9}), test, env.offered())
    ours_value = float(q[np.arange(test.n), scores.argmax(1)].mean())
    print(f"oracle {q.max(1).mean():.4f}  uniform {q.mean():.4f}")
    print(
        f"sortition train_bandit (ridge, closed form): {_median_ms(times):8.1f} ms  greedy value {ours_value:.4f}"
    )
    try:
        import vowpalwabbit  # noqa: F401
    except ImportError:
        print(VW_HINT)
        return
    keys = list(env.action_keys)
    examples = [
        _vw_example(
            env,
            ctx.numeric[i],
            ctx.categorical[i],
            (keys.index(logs.action[i]), -logs.reward[i], logs.action_probability[i]),
        )
        for i in range(n)
    ]
    vw_times = []
    for _ in range(3):
        vw = _vw("")
        t0 = time.perf_counter()
        for ex in examples:
            vw.learn(ex)
        vw_times.append(time.perf_counter() - t0)
    greedy = np.array(
        [
            int(np.argmax(vw.predict(_vw_example(env, test.numeric[i], test.categorical[i]))))
            for i in range(test.n)
        ]
    )
    vw_value = float(q[np.arange(test.n), greedy].mean())
    vw.finish()
    print(
        f"vowpalwabbit cb_explore_adf squarecb, 1 pass: {_median_ms(vw_times):8.1f} ms  greedy value {vw_value:.4f}"
    )
    print(
        f"time vw/sortition: {_ratio(_median_ms(vw_times), _median_ms(times))}; "
        f"greedy value sortition - vw: {ours_value - vw_value:+.4f}"
    )


def bench_rounds(env, rounds: int, subjects: int) -> None:
    from sortition.learning.simulate import simulate_bandit

    print(
        f"\n== 3. online loop: {rounds} rounds x {subjects} subjects, cold start, expected reward per subject =="
    )
    t0 = time.perf_counter()
    res = simulate_bandit(
        env,
        rounds=rounds,
        subjects_per_round=subjects,
        seed=0,
        gamma=SqrtGamma(1.0),
        action_probability_floor=0.05,
    )
    ours_time = time.perf_counter() - t0
    vw_rewards = None
    try:
        import vowpalwabbit  # noqa: F401

        vw = _vw("--gamma_scale 10")
        seeds = np.random.SeedSequence(0).spawn(rounds)  # the same subjects as simulate_bandit
        rng = np.random.default_rng(123)
        vw_rewards = []
        t0 = time.perf_counter()
        for r in range(rounds):
            ctx = env.sample_contexts(subjects, np.random.default_rng(seeds[r]), prefix=f"0-{r}-")
            q = env.expected_rewards(ctx)
            got = []
            for i in range(ctx.n):
                pmf = np.asarray(vw.predict(_vw_example(env, ctx.numeric[i], ctx.categorical[i])))
                pmf = pmf / pmf.sum()
                a = int(rng.choice(len(pmf), p=pmf))
                reward = float(env.draw_rewards(np.array([q[i, a]]), rng)[0])
                vw.learn(_vw_example(env, ctx.numeric[i], ctx.categorical[i], (a, -reward, pmf[a])))
                got.append(q[i, a])
            vw_rewards.append(float(np.mean(got)))
        vw_time = time.perf_counter() - t0
        vw.finish()
    except ImportError:
        print(VW_HINT)
    head = f"{'round':>5} {'sortition':>10} {'vw':>8} {'uniform':>8} {'oracle':>8}"
    print(head)
    for r, rr in enumerate(res.rounds):
        vw_col = f"{vw_rewards[r]:8.4f}" if vw_rewards else f"{'-':>8}"
        print(f"{r:5d} {rr.expected_reward:10.4f} {vw_col} {rr.uniform_reward:8.4f} {rr.oracle_reward:8.4f}")
    ours_mean = statistics.mean(rr.expected_reward for rr in res.rounds)
    line = f"mean over rounds: sortition {ours_mean:.4f}"
    if vw_rewards:
        line += f", vw {statistics.mean(vw_rewards):.4f}, ratio sortition/vw {ours_mean / statistics.mean(vw_rewards):.3f}"
    print(line)
    if rounds > 1:
        ours_late = statistics.mean(rr.expected_reward for rr in res.rounds[1:])
        line = f"mean over rounds 1+ (after the first retrain): sortition {ours_late:.4f}"
        if vw_rewards:
            vw_late = statistics.mean(vw_rewards[1:])
            line += f", vw {vw_late:.4f}, ratio sortition/vw {ours_late / vw_late:.3f}"
        print(line)
    line = f"wall time: sortition {ours_time:.2f} s (client + DuckDB store + retrain each round)"
    if vw_rewards:
        line += (
            f", vw {vw_time:.2f} s (online learn per event); ratio vw/sortition {_ratio(vw_time, ours_time)}"
        )
    print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--bootstrap", type=int, default=500)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--subjects", type=int, default=500)
    a = p.parse_args()
    env = make_environment(n_actions=4, seed=0)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    bench_ope(env, a.reps, a.n, a.bootstrap)
    bench_training(env, a.n)
    bench_rounds(env, a.rounds, a.subjects)


if __name__ == "__main__":
    main()
