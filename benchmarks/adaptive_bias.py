"""Average-effect bias and coverage of the BCF revenue posterior on loop-collected data, beside uniform data.

For each scenario and seed, the adaptive loop (served through the Client, as benchmarks/loop.py; the
stratified engine allocates, for speed) collects ``rounds x visitors`` rows; the BCF posterior is then
fitted on them and its average effects are compared with the truth of the same visitors. The baseline
is a uniform A/B test of the same size on the same scenario. Per average effect:
z = (posterior mean - truth) / posterior sd; a calibrated posterior has mean z ~ 0, RMS z ~ 1 and
80%/90% intervals covering about 80%/90% of the truths. The conversion and severity components are
scored the same way. Each fit is scored twice: "plug-in" (the mean over visitors of the contrast draws,
``Posterior.mean_contrasts``: what the library reported before the one-step estimate) and "one-step"
(``Posterior.average_effects``: what ``lift_summary`` and the loop report now).

    python benchmarks/adaptive_bias.py --scenarios storefront,multi_winner --seeds 8
    python benchmarks/adaptive_bias.py --scenarios multi_winner --seeds 24 --by-arm   # + a row per contrast

``--by-arm`` adds, per data kind, component, method and treatment arm, the same figures for that arm's
contrast alone, the share of |z| above 1.645 (a normal z: 10%) and each arm's traffic in the last round.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.experiment import SequentialExperiment  # noqa: E402
from sortition.experiment.schedules import fixed  # noqa: E402
from sortition.experiment.simulation import simulate  # noqa: E402
from sortition.experiment.steps import experiment_data  # noqa: E402
from sortition.posterior import fit  # noqa: E402
from sortition.scenarios import generate, make_scenario  # noqa: E402

COMPONENTS = ("revenue", "conversion", "severity")


def loop_data(name: str, seed: int, rounds: int, visitors: int):
    scenario = make_scenario(name, 3, "revenue")
    loop = SequentialExperiment(scenario.arms, key=f"b-{name}", outcome="revenue", engine="stratified",
                                fit_options={"progress": False}, schedule=fixed(rounds, visitors), seed=seed)
    simulate(scenario, loop, seed=seed)
    data = experiment_data(loop.data_, scenario.arms, None)
    return data, scenario.truth(data.covariates)


def last_round_shares(data) -> np.ndarray:
    """(K,) each arm's share of the last round's rows (all rows when the data have no rounds)."""
    rows = np.ones(data.n, dtype=bool) if data.round is None else np.asarray(data.round) == np.max(data.round)
    return np.bincount(data.arm_index[rows], minlength=data.n_arms) / rows.sum()


def scores(data, truth, seed: int, fit_options: dict) -> dict[tuple[str, str], np.ndarray]:
    """Per (method, component): (K-1, 3) rows of z, covered at 80%, covered at 90%. Methods: "plug-in"
    (the mean over visitors of the contrast draws, ``mean_contrasts``) and "one-step"
    (``average_effects``, what the library reports), from the same fit."""
    post = fit(data, outcome="revenue", seed=seed, progress=False, **fit_options)
    true = {"revenue": truth.contrasts, "conversion": truth.conversion[:, 1:] - truth.conversion[:, :1],
            "severity": truth.order_value[:, 1:] - truth.order_value[:, :1]}
    out = {}
    for comp in COMPONENTS:
        c = None if comp == "revenue" else comp
        for method, draws in (("plug-in", post.mean_contrasts(c)), ("one-step", post.average_effects(component=c))):
            t = true[comp].mean(axis=0)
            z = (draws.mean(axis=0) - t) / draws.std(axis=0)
            cover = [(lo <= t) & (t <= hi) for lo, hi in
                     (np.quantile(draws, [(1 - lv) / 2, (1 + lv) / 2], axis=0) for lv in (0.8, 0.9))]
            out[method, comp] = np.column_stack([z, *cover])
    return out


def print_by_arm(name: str, rows: dict, shares: dict) -> None:
    """Per data kind, component, method and treatment arm: mean z, RMS z, share of |z| > 1.645 and
    coverage of that arm's contrast over the seeds, beside the arm's and control's last-round traffic."""
    print(f"{'scenario':<14}{'data':<9}{'component':<12}{'method':<10}{'arm':>4}{'mean z':>8}{'RMS z':>7}"
          f"{'|z|>1.64':>9}{'cov 80':>8}{'cov 90':>8}{'arm last':>9}{'ctl last':>9}")
    for kind in ("loop", "uniform"):
        share = np.mean(shares[kind], axis=0)  # (K,) mean over seeds
        for comp in COMPONENTS:
            for method in ("plug-in", "one-step"):
                s = np.stack([r[method, comp] for r in rows[kind]])  # (seeds, K-1, 3)
                for j in range(s.shape[1]):
                    z = s[:, j, 0]
                    print(f"{name:<14}{kind:<9}{comp:<12}{method:<10}{j + 1:>4}{z.mean():>+8.2f}"
                          f"{np.sqrt((z ** 2).mean()):>7.2f}{(np.abs(z) > 1.645).mean():>9.0%}"
                          f"{s[:, j, 1].mean():>8.0%}{s[:, j, 2].mean():>8.0%}{share[j + 1]:>9.1%}{share[0]:>9.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="storefront,multi_winner")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--visitors", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--by-arm", action="store_true", help="also a row per treatment arm's contrast")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    options = {"num_threads": args.threads}
    n = args.rounds * args.visitors
    print(f"BCF revenue posterior, {args.rounds} rounds x {args.visitors} visitors (loop) vs uniform A/B "
          f"of {n}; seeds 0..{args.seeds - 1}; z = (mean - truth) / sd per average effect")
    print(f"{'scenario':<14}{'data':<9}{'component':<12}{'method':<10}{'mean z':>8}{'RMS z':>7}{'cov 80':>8}"
          f"{'cov 90':>8}{'control':>9}")
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        rows = {"loop": [], "uniform": []}
        control = {"loop": [], "uniform": []}
        shares = {"loop": [], "uniform": []}
        for seed in range(args.seeds):
            data, truth = loop_data(name, seed, args.rounds, args.visitors)
            rows["loop"].append(scores(data, truth, seed, options))
            control["loop"].append((data.arm_index == 0).mean())
            shares["loop"].append(last_round_shares(data))
            data, truth = generate(name, n, arms=3, outcome="revenue", seed=seed)
            rows["uniform"].append(scores(data, truth, seed, options))
            control["uniform"].append((data.arm_index == 0).mean())
            shares["uniform"].append(last_round_shares(data))
        rms = {}
        for kind in ("loop", "uniform"):
            for comp in COMPONENTS:
                for method in ("plug-in", "one-step"):
                    s = np.concatenate([r[method, comp] for r in rows[kind]])
                    rms[kind, comp, method] = float(np.sqrt((s[:, 0] ** 2).mean()))
                    print(f"{name:<14}{kind:<9}{comp:<12}{method:<10}{s[:, 0].mean():>+8.2f}"
                          f"{rms[kind, comp, method]:>7.2f}{s[:, 1].mean():>8.0%}{s[:, 2].mean():>8.0%}"
                          f"{np.mean(control[kind]):>9.1%}")
        if args.by_arm:
            print_by_arm(name, rows, shares)
        for kind in ("loop", "uniform"):
            ratio = rms[kind, "revenue", "one-step"] / rms[kind, "revenue", "plug-in"]
            print(f"{name:<14}RMS z of the revenue effect on {kind} data, one-step / plug-in: {ratio:.2f}x")


if __name__ == "__main__":
    main()
