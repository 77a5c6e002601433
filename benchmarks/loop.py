"""The adaptive loop against a uniform A/B test of the same size, on scenarios with known truth.

For each scenario and seed, a full simulated experiment (visitors served through the Client
against each round's exported flag configuration, events in an in-memory DuckDB store, BCF
posterior, welfare policy tree, Thompson allocation with control and explore cells) runs for
the given rounds. Regret is the expected outcome lost vs the oracle (each visitor's best arm),
summed over every visitor; the uniform A/B test is scored on the same visitors. "Segments
correct" is the share of fresh traffic whose final segment's chosen arm is that segment's true
best arm.

    python benchmarks/loop.py                      # storefront, multi_winner, reversal; 3 seeds
    python benchmarks/loop.py --scenarios storefront --seeds 5 --rounds 4 --visitors 1000
    python benchmarks/loop.py --compare --jobs 16   # today's loop (cold refits, re-segment every round)
                                                    # beside warm starts + stable segments, in parallel
    python benchmarks/loop.py --compare --configs "cold, stable" "warm, stable"   # warm starts alone

--compare also scores every round's posterior against the scenario's truth: CATE RMSE and the 80% / 90%
per-visitor interval coverage over rounds >= 2 (all visitors so far), with the fit's CPU seconds
(``time.process_time``, one thread) beside its wall seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from sortition.experiment import SequentialExperiment, steps  # noqa: E402
from sortition.experiment.export import experiment_salt  # noqa: E402
from sortition.experiment.loop_policy import DEFAULT_POLICY  # noqa: E402
from sortition.experiment.schedules import fixed  # noqa: E402
from sortition.experiment.simulation import simulate  # noqa: E402
from sortition.scenarios import make_scenario  # noqa: E402
from sortition.store import EventStore  # noqa: E402

ARMS = {"storefront": 3, "multi_winner": 4, "reversal": 3, "two_segments": 2, "gradient": 2}


# --compare: today's loop (every round refit cold and re-segmented, no incumbent-arm rule, no churn cap) beside the new
# defaults; "cold, stable" isolates the warm start (same segmentation rule, so the ratio cold/warm is the warm start's alone)
CONFIGS = {"cold, re-segment": {"warm_start": False, "resegment_probability": 0.0, "arm_switch_probability": 0.0,
                                "max_churn": 1.0},
           "cold, stable": {"warm_start": False, "resegment_probability": 0.9},
           "warm, stable": {"warm_start": True, "resegment_probability": 0.9}}


def _scored_fit(scenario, record: list):
    """``fit`` that also records, per round, its CPU and wall seconds and the posterior's CATE RMSE and
    80% / 90% per-visitor coverage against the scenario's truth (all visitors so far)."""
    fit = DEFAULT_POLICY.fit

    def scored(data, **options):
        c0, w0 = time.process_time(), time.perf_counter()
        post = fit(data, **options)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        truth = scenario.truth(data.covariates).contrasts  # (n, K-1)
        row = {"cpu": cpu, "wall": wall, "rmse": float(np.sqrt(np.mean((post.cate() - truth) ** 2))),
               "warm": str(post.info.get("warm_start", "")).startswith("warm")}
        for level in (0.8, 0.9):
            lo, hi = post.cate_interval(level)
            row[f"cov{round(level * 100)}"] = float(np.mean((lo <= truth) & (truth <= hi)))
        record.append(row)
        return post

    return scored


def run_one(name: str, seed: int, rounds: int, visitors: int, engine: str, config: dict | None = None) -> dict:
    scenario = make_scenario(name, ARMS.get(name, 3))
    options = {"progress": False}
    if engine == "bcf":
        options["num_threads"] = 1
    fits: list[dict] = []
    experiment = SequentialExperiment(
        scenario.arms, key=f"bench-{name}", outcome=scenario.outcome, engine=engine, fit_options=options,
        schedule=fixed(rounds, visitors), seed=seed, **(config or {}),
        policy=dataclasses.replace(DEFAULT_POLICY, fit=_scored_fit(scenario, fits)),
    )
    t0 = time.perf_counter()
    with EventStore(":memory:") as store:
        sim = simulate(scenario, experiment, seed=seed, store=store)
    n = rounds * visitors
    return {
        "loop": sim.regret / n,
        "uniform": sim.uniform_regret / n,
        "accuracy": sim.segment_accuracy,
        "plan_value": sim.policy_values["plan"],
        "segments_value": sim.policy_values["segments"],
        "oracle_value": sim.policy_values["oracle"],
        "uniform_value": sim.policy_values["uniform"],
        "best_arm_value": sim.policy_values["best_single_arm"],
        "n_segments": len(sim.segments),
        "seconds": time.perf_counter() - t0,
        "outcome": scenario.outcome,
        "arms": len(scenario.arms),
        # rounds >= 2: fit and whole-round (fit + policy) seconds; churn of the rounds after round 3
        "fit_seconds_r2": sum(r.seconds["fit"] for r in experiment.results_[2:]),
        "round_seconds_r2": sum(r.seconds["fit"] + r.seconds["policy"] for r in experiment.results_[2:]),
        "churn_after_r3": max((r.churn for r in experiment.results_[3:]), default=float("nan")),
        "churn_top_arm_after_r3": max((r.churn_top_arm for r in experiment.results_[3:]), default=float("nan")),
        "arm_churn_after_r3": max(_arm_churn(experiment)[3:], default=float("nan")),
        "churn_per_round": [r.churn for r in experiment.results_],
        "resegment_p": [r.resegment_probability for r in experiment.results_],
        "segments": [seg.description for seg in experiment.results_[-1].segments],
        "segment_change": [r.segment_change for r in experiment.results_],
        "allocation_step": [r.allocation_step for r in experiment.results_],
        # rounds >= 2: fit CPU seconds, CATE RMSE and coverage (means over those rounds), warm fits
        "fit_cpu_r2": sum(f["cpu"] for f in fits[2:]),
        "rmse_r2": statistics.fmean(f["rmse"] for f in fits[2:]) if fits[2:] else float("nan"),
        "cov80_r2": statistics.fmean(f["cov80"] for f in fits[2:]) if fits[2:] else float("nan"),
        "cov90_r2": statistics.fmean(f["cov90"] for f in fits[2:]) if fits[2:] else float("nan"),
        "warm_fits_r2": sum(f["warm"] for f in fits[2:]),
    }


def _arm_churn(experiment: SequentialExperiment) -> list[float]:
    """Per round (NaN for the first): the share of the visitors so far whose served arm (their shard in the
    plan's flag) differs between the round's plan and the next, whatever their segments (the visitors
    ``RoundResult.churn`` reads)."""
    rows, salt, plans = experiment.data_, experiment_salt(experiment.key), experiment.plans_
    out = [float("nan")]
    for r in range(1, len(experiment.results_)):
        data = steps.experiment_data(rows[rows["round"] <= r], experiment.arms, experiment.covariates)
        out.append(float(np.mean(steps.served_arms(plans[r], data, salt) != steps.served_arms(plans[r + 1], data, salt))))
    return out


def _job(args: tuple) -> dict:
    warnings.filterwarnings("ignore", category=UserWarning, module="stochtree")
    return run_one(*args)


def compare(names: list[str], seeds: int, rounds: int, visitors: int, engine: str, jobs: int,
            configs: list[str]) -> None:
    """Loop configurations side by side (same scenarios and seeds, one process per run), each pair's ratio."""
    from concurrent.futures import ProcessPoolExecutor

    chosen = {label: CONFIGS[label] for label in configs}
    tasks = [(n, s, rounds, visitors, engine, c) for n in names for s in range(seeds) for c in chosen.values()]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            out = list(pool.map(_job, tasks))
    else:  # in sequence, in this process (a shared machine: no pool, no second interpreter)
        out = [_job(t) for t in tasks]
    runs = {(t[0], t[1], tuple(t[5].items())): r for t, r in zip(tasks, out, strict=True)}
    print(f"{rounds} rounds x {visitors} visitors, seeds 0..{seeds - 1}, 1 thread per run; fit s: sums over rounds "
          ">= 2 (3rd round on), medians over seeds; RMSE, coverage: means over those rounds and seeds; regret, "
          "churn: means; churn = segment or served arm (each visitor's shard in the flag) changed, the largest "
          "after round 3; top arm = the proxy taking each segment's most-allocated arm as served")
    header = (f"{'scenario':<14}{'config':<18}{'fit CPU s':>10}{'fit wall s':>11}{'round s':>9}{'CATE RMSE':>10}"
              f"{'cov80':>7}{'cov90':>7}{'regret':>9}{'seg. ok':>8}{'churn>r3':>9}{'warm':>6}")
    print(header)
    print("-" * len(header))
    for name in names:
        rows = {}
        for label, config in chosen.items():
            rs = [runs[(name, s, tuple(config.items()))] for s in range(seeds)]
            rows[label] = m = {
                "cpu": statistics.median(r["fit_cpu_r2"] for r in rs),
                "fit": statistics.median(r["fit_seconds_r2"] for r in rs),
                "round": statistics.median(r["round_seconds_r2"] for r in rs),
                "rmse": statistics.fmean(r["rmse_r2"] for r in rs),
                "cov80": statistics.fmean(r["cov80_r2"] for r in rs),
                "cov90": statistics.fmean(r["cov90_r2"] for r in rs),
                "regret": statistics.fmean(r["loop"] for r in rs),
                "accuracy": statistics.fmean(r["accuracy"] for r in rs),
                "churn": statistics.fmean(r["churn_after_r3"] for r in rs),
                "by_round": [statistics.fmean(r["churn_per_round"][i] for r in rs) for i in range(1, rounds)],
                "warm": sum(r["warm_fits_r2"] for r in rs),
                "fits": sum(max(rounds - 2, 0) for _ in rs),
            }
            print(f"{name:<14}{label:<18}{m['cpu']:>10.1f}{m['fit']:>11.1f}{m['round']:>9.1f}{m['rmse']:>10.4f}"
                  f"{m['cov80']:>7.3f}{m['cov90']:>7.3f}{m['regret']:>9.4f}{m['accuracy']:>8.0%}{m['churn']:>9.1%}"
                  f"{m['warm']:>3}/{m['fits']:<2}  churn by round " + " ".join(f"{c:.1%}" for c in m["by_round"]))
            print(f"{'':<14}{'':<18}per seed: regret | churn>r3 segment or served arm / served arm / segment or "
                  "top arm: " + ", ".join(f"{r['loop']:.4f} | {r['churn_after_r3']:.1%} / {r['arm_churn_after_r3']:.1%} / "
                                          f"{r['churn_top_arm_after_r3']:.1%}" for r in rs))
        for cold, warm in (("cold, stable", "warm, stable"), ("cold, re-segment", "warm, stable")):
            if cold in rows and warm in rows:
                a, b = rows[cold], rows[warm]
                print(f"{'':<14}{'ratio ' + cold.split(',')[1].strip() + ' c/w':<18}{a['cpu'] / b['cpu']:>9.2f}x"
                      f"{a['fit'] / b['fit']:>10.2f}x{a['round'] / b['round']:>8.2f}x{b['rmse'] / a['rmse']:>9.2f}x"
                      f"{b['cov80'] - a['cov80']:>+7.3f}{b['cov90'] - a['cov90']:>+7.3f}"
                      f"{b['regret'] / a['regret']:>8.2f}x")
    print("ratio rows: cold/warm for the seconds (above 1: warm is faster), warm/cold for RMSE and regret, "
          "warm - cold for coverage")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="storefront,multi_winner,reversal")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--visitors", type=int, default=2000, help="visitors per round (the demo's defaults)")
    parser.add_argument("--engine", default="bcf")
    parser.add_argument("--compare", action="store_true",
                        help="today's loop (cold refits, re-segment every round) beside warm starts + stable segments")
    parser.add_argument("--jobs", type=int, default=1, help="parallel runs for --compare (1 thread each)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="loop configurations --compare runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="stochtree")
    if args.compare:
        names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        compare(names, args.seeds, args.rounds, args.visitors, args.engine, args.jobs, args.configs)
        return
    print(f"adaptive loop vs uniform A/B: {args.rounds} rounds x {args.visitors} visitors, engine {args.engine}, "
          f"seeds 0..{args.seeds - 1}; regret = expected outcome lost vs the oracle, per visitor (mean over seeds)")
    header = (f"{'scenario':<14}{'outcome':<11}{'K':>2} {'loop regret':>12} {'uniform A/B':>12} {'ratio':>7} "
              f"{'segments correct':>17} {'final plan':>11} {'seg. best':>10} {'oracle':>8} {'best arm':>9} "
              f"{'sec/run (median)':>17}")
    print(header)
    print("-" * len(header))
    wins = 0
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in names:
        runs = [run_one(name, seed, args.rounds, args.visitors, args.engine) for seed in range(args.seeds)]
        mean = {k: statistics.fmean(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
        ratio = mean["loop"] / mean["uniform"] if mean["uniform"] > 0 else float("nan")
        wins += mean["loop"] < mean["uniform"] and mean["accuracy"] >= 0.999
        print(f"{name:<14}{runs[0]['outcome']:<11}{runs[0]['arms']:>2} {mean['loop']:>12.4f} {mean['uniform']:>12.4f} "
              f"{ratio:>7.2f} {mean['accuracy']:>16.0%} {mean['plan_value']:>11.3f} {mean['segments_value']:>10.3f} "
              f"{mean['oracle_value']:>8.3f} {mean['best_arm_value']:>9.3f} "
              f"{statistics.median(r['seconds'] for r in runs):>17.1f}")
        per_seed = ", ".join(f"seed {i}: {r['loop']:.4f} vs {r['uniform']:.4f}, {r['accuracy']:.0%}" for i, r in enumerate(runs))
        print(f"{'':<14}per seed (loop vs uniform, segments correct): {per_seed}")
    print(f"scenarios where the loop beats uniform A/B with every final segment's best arm right (mean over seeds): "
          f"{wins}/{len(names)}")
    print("columns 'final plan' .. 'best arm': value per visitor on fresh visitors of the next round's plan, of serving "
          "each final segment its chosen best arm, of the oracle, and of the best single arm for everyone")


if __name__ == "__main__":
    main()
