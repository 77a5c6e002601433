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
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.experiment import SequentialExperiment  # noqa: E402
from sortition.experiment.schedules import fixed  # noqa: E402
from sortition.experiment.simulation import simulate  # noqa: E402
from sortition.scenarios import make_scenario  # noqa: E402
from sortition.store import EventStore  # noqa: E402

ARMS = {"storefront": 3, "multi_winner": 4, "reversal": 3, "two_segments": 2, "gradient": 2}


# --compare: today's loop (every round refit cold and re-segmented) beside the new defaults
CONFIGS = {"cold, re-segment": {"warm_start": False, "resegment_probability": 0.0},
           "warm, stable": {"warm_start": True, "resegment_probability": 0.95}}


def run_one(name: str, seed: int, rounds: int, visitors: int, engine: str, config: dict | None = None) -> dict:
    scenario = make_scenario(name, ARMS.get(name, 3))
    options = {"progress": False}
    if engine == "bcf":
        options["num_threads"] = 1
    experiment = SequentialExperiment(
        scenario.arms, key=f"bench-{name}", outcome=scenario.outcome, engine=engine, fit_options=options,
        schedule=fixed(rounds, visitors), seed=seed, **(config or {}),
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
        "churn_per_round": [r.churn for r in experiment.results_],
        "resegment_p": [r.resegment_probability for r in experiment.results_],
        "segments": [seg.description for seg in experiment.results_[-1].segments],
    }


def _job(args: tuple) -> dict:
    warnings.filterwarnings("ignore", category=UserWarning, module="stochtree")
    return run_one(*args)


def compare(names: list[str], seeds: int, rounds: int, visitors: int, engine: str, jobs: int) -> None:
    """Today's loop beside warm starts + stable segments: same scenarios and seeds, one process per run."""
    from concurrent.futures import ProcessPoolExecutor

    tasks = [(n, s, rounds, visitors, engine, c) for n in names for s in range(seeds) for c in CONFIGS.values()]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        out = list(pool.map(_job, tasks))
    runs = {(t[0], t[1], tuple(t[5].items())): r for t, r in zip(tasks, out, strict=True)}
    print(f"{rounds} rounds x {visitors} visitors, seeds 0..{seeds - 1}, 1 thread per run; medians over seeds "
          "(regret, churn: means)")
    header = (f"{'scenario':<14}{'config':<18}{'fit s r>=2':>11}{'round s r>=2':>13}{'regret':>9}"
              f"{'seg. correct':>13}{'max churn r>3':>14}")
    print(header)
    print("-" * len(header))
    for name in names:
        rows = {}
        for label, config in CONFIGS.items():
            rs = [runs[(name, s, tuple(config.items()))] for s in range(seeds)]
            rows[label] = m = {
                "fit": statistics.median(r["fit_seconds_r2"] for r in rs),
                "round": statistics.median(r["round_seconds_r2"] for r in rs),
                "regret": statistics.fmean(r["loop"] for r in rs),
                "accuracy": statistics.fmean(r["accuracy"] for r in rs),
                "churn": statistics.fmean(r["churn_after_r3"] for r in rs),
                "by_round": [statistics.fmean(r["churn_per_round"][i] for r in rs) for i in range(1, rounds)],
            }
            print(f"{name:<14}{label:<18}{m['fit']:>11.1f}{m['round']:>13.1f}{m['regret']:>9.4f}"
                  f"{m['accuracy']:>13.0%}{m['churn']:>14.1%}  churn by round "
                  + " ".join(f"{c:.1%}" for c in m["by_round"]))
        a, b = rows["cold, re-segment"], rows["warm, stable"]
        print(f"{'':<14}{'ratio cold/warm':<18}{a['fit'] / b['fit']:>10.2f}x{a['round'] / b['round']:>12.2f}x"
              f"{'':>9}  regret warm/cold {b['regret'] / a['regret']:.3f}")


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
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="stochtree")
    if args.compare:
        names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        compare(names, args.seeds, args.rounds, args.visitors, args.engine, args.jobs)
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
