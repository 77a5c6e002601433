"""Contextual-bandit bake-off: Sortition's incremental ridge against Vowpal Wabbit, event by event.

The supervised-to-bandit protocol of Bietti, Agarwal and Langford, "A Contextual Bandit Bake-off"
(JMLR 22, 2021): each row of a classification data set is a context, each class an action, and the
reward is 1 for the true class, 0 otherwise. One pass over the shuffled rows; at each row the
learner picks an action from its exploration distribution, sees only that action's reward, and
learns. The figure is the progressive reward: the mean reward over the pass.

* Sortition: ``IncrementalBandit`` (per-action ridge, sufficient statistics updated every
  ``--update-every`` events, ``ColdStart`` bonus), served by the serving evaluator itself
  (``evaluate_bandit``: ``score_actions`` + ``action_weights`` + the hash-based selection).
* VW: ``cb_explore_adf --squarecb -q sa`` (cost = 1 - reward, as in the paper), learning after
  every event, sampling from its own probabilities.
Both explore with SquareCB's inverse-gap weighting at gamma = 10 sqrt(t) (VW's default
``--gamma_scale 10 --gamma_exponent 0.5``), so the comparison is of the learners.

Data: ``sklearn.datasets.make_classification`` only (K from 2 to 10, p from 4 to 64, a few thousand
rows). scikit-learn's bundled real data sets are held out: nothing here is tuned on them.
``--held-out`` runs them instead, once, with the settings chosen on the synthetic grid: iris (K=3,
p=4, 150 rows), wine (3, 13, 178), breast_cancer (2, 30, 569) and digits (10, 64, 1,797). Their
features are passed as they are, unscaled (wine's proline runs to 1,680, breast_cancer's areas
to 4,254), as a user's would be; ``--standardize`` z-scores them first (with the whole set's mean
and deviation, a peek that favours neither learner). Each pass is all the rows, so ``--rows`` does
not apply.

Per data set it prints the median progressive reward over shuffled passes, the shuffles won, the
mean expected reward (the probability each learner gave the true class, averaged over the pass: the
same figure in expectation, without the noise of the learner's own draws) and the process time per
event. ``--data-seeds 1,2`` runs other random_states of the same grid (a check against tuning to
the grid's own draws).

Run: python benchmarks/bandit_bakeoff.py [--rows 3000 --shuffles 9 --data-seeds 0 --max-weight 5]
     python benchmarks/bandit_bakeoff.py --held-out [--standardize] [--shuffles 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.learning.events import BanditEvents  # noqa: E402
from sortition.learning.incremental import ColdStart, IncrementalBandit, numeric_layout  # noqa: E402
from sortition.learning.training import SqrtGamma  # noqa: E402
from sortition.serving.attributes import Attributes  # noqa: E402
from sortition.serving.bandits import action_weights, evaluate_bandit, score_actions  # noqa: E402

# (classes K, features p): the grid of data sets
GRID = ((2, 4), (2, 64), (3, 8), (4, 16), (5, 32), (6, 8), (8, 16), (10, 32), (10, 64))
GAMMA_SCALE = 10.0


def make_data(k: int, p: int, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    informative = max(2, p // 2)
    X, y = make_classification(
        n_samples=rows,
        n_features=p,
        n_informative=informative,
        n_redundant=min(p - informative, p // 4),
        n_classes=k,
        n_clusters_per_class=1,
        class_sep=1.0,
        flip_y=0.01,
        random_state=seed,
    )
    return X, y


HELD_OUT = ("iris", "wine", "breast_cancer", "digits")


def held_out_data(name: str, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """One of scikit-learn's bundled real data sets: features as they come, or z-scored."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64)
    if standardize:
        scale = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)  # digits has constant pixels
    return X, np.asarray(bunch.target, dtype=np.intp)


@dataclass(frozen=True)
class Pass:
    """One learner's pass over a shuffled data set.

    rewards: (rows,) the reward it got at each event (the progressive reward is their mean);
    expected: (rows,) the probability its exploration gave the true class at that event (the same
        mean in expectation over its own draws, with less noise);
    seconds: process time of the learner's own calls (choose + learn), summed over the pass.
    """

    rewards: np.ndarray
    expected: np.ndarray
    seconds: float


def run_sortition(
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    shuffle: int,
    update_every: int,
    bonus: float,
    l2: float,
    weighting: str,
    max_weight: float,
) -> Pass:
    p = X.shape[1]
    names = [f"x{j}" for j in range(p)]
    classes = [f"c{c}" for c in range(int(y.max()) + 1)]
    actions = {c: None for c in classes}
    learner = IncrementalBandit.cold(
        numeric_layout(names),
        classes,
        update_every=update_every,
        gamma=SqrtGamma(GAMMA_SCALE),
        l2=l2,
        importance_weighting=weighting,
        max_importance_weight=max_weight,
        cold_start=ColdStart(bonus),
    )
    model = learner.model_.serving_model()
    rewards, expected, seconds = np.zeros(len(order)), np.zeros(len(order)), 0.0
    for t, i in enumerate(order):
        subject = Attributes(dict(zip(names, X[i].tolist())), {})
        true = classes[y[i]]
        scores = score_actions(model, subject, actions)
        expected[t] = action_weights(scores, model.gamma, model.action_probability_floor)[true]
        t0 = time.process_time()
        # the subject key seeds the hash draw: distinct per shuffle, so shuffles are independent
        chosen = evaluate_bandit("bakeoff", f"{shuffle}-{t}", subject, actions, model)
        reward = 1.0 if chosen.action_key == true else 0.0
        if learner.learn(
            BanditEvents(
                action=np.array([chosen.action_key], dtype=object),
                reward=np.array([reward]),
                action_probability=np.array([chosen.action_weight]),
                subject_numeric=(subject.numeric,),
                subject_categorical=({},),
                action_numeric=({},),
                action_categorical=({},),
            )
        ):
            model = learner.model_.serving_model()
        seconds += time.process_time() - t0
        rewards[t] = reward
    return Pass(rewards, expected, seconds)


def _vw_example(x: np.ndarray, k: int, label: tuple[int, float, float] | None = None) -> list[str]:
    lines = ["shared |s " + " ".join(f"x{j}:{v:.6g}" for j, v in enumerate(x))]
    for a in range(k):
        prefix = f"0:{label[1]:g}:{label[2]:.6g} " if label is not None and label[0] == a else ""
        lines.append(f"{prefix}|a a={a}")
    return lines


def run_vw(X: np.ndarray, y: np.ndarray, order: np.ndarray, shuffle: int) -> Pass:
    import vowpalwabbit

    k = int(y.max()) + 1
    vw = vowpalwabbit.Workspace(
        f"--cb_explore_adf --squarecb -q sa --gamma_scale {GAMMA_SCALE:g} --quiet --random_seed {shuffle}"
    )
    rng = np.random.default_rng(shuffle)
    rewards, expected, seconds = np.zeros(len(order)), np.zeros(len(order)), 0.0
    for t, i in enumerate(order):
        t0 = time.process_time()
        pmf = np.asarray(vw.predict(_vw_example(X[i], k)), dtype=float)
        pmf = pmf / pmf.sum()
        a = int(rng.choice(k, p=pmf))
        reward = 1.0 if a == y[i] else 0.0
        vw.learn(_vw_example(X[i], k, (a, 1.0 - reward, pmf[a])))
        seconds += time.process_time() - t0
        rewards[t], expected[t] = reward, pmf[y[i]]
    vw.finish()
    return Pass(rewards, expected, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--shuffles", type=int, default=9, help="shuffled passes per data set (median taken)")
    ap.add_argument("--update-every", type=int, default=1, help="Sortition's events per update")
    ap.add_argument("--bonus", type=float, default=0.5, help="ColdStart bonus (reward units)")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--weighting", default="ips", choices=("none", "ips"))
    # 5, not the library's 20: in this on-policy loop a tighter clip costs little bias and saves
    # variance on the many-class sets; 3 starves the easy K=2 p=4 set (see docs/learning.md)
    ap.add_argument("--max-weight", type=float, default=5.0, help="clip of the ips weights")
    ap.add_argument("--grid", default=None, help="K:p,K:p,... (default: the built-in grid)")
    ap.add_argument(
        "--data-seeds", default="0", help="comma-separated offsets of make_classification's random_state"
    )
    ap.add_argument("--held-out", action="store_true",
                    help="scikit-learn's bundled real data sets instead of the synthetic grid (see above)")
    ap.add_argument("--standardize", action="store_true", help="with --held-out: z-score the features")
    a = ap.parse_args()
    grid = GRID
    if a.grid is not None:
        grid = tuple(tuple(int(v) for v in kp.split(":")) for kp in a.grid.split(","))
    data_seeds = [int(v) for v in a.data_seeds.split(",")]
    if a.held_out:
        sets = [(name, *held_out_data(name, a.standardize)) for name in HELD_OUT]
    else:
        sets = [(f"{1000 * k + p + ds}", *make_data(k, p, a.rows, seed=1000 * k + p + ds))
                for k, p in grid for ds in data_seeds]
    print(
        "supervised-to-bandit, "
        + (f"held-out real data sets, features {'z-scored' if a.standardize else 'unscaled'}, " if a.held_out
           else f"{a.rows} rows, ")
        + f"{a.shuffles} shuffles (median), "
        f"gamma = {GAMMA_SCALE:g} sqrt(t); sortition: update every {a.update_every}, "
        f"ColdStart({a.bonus:g}), l2 {a.l2:g}, weighting {a.weighting}"
        + (f" (clip {a.max_weight:g})" if a.weighting == "ips" else "")
    )
    print(
        "reward: median progressive reward; won: shuffles where sortition >= vw; E[reward]: mean over "
        "shuffles of the probability given to the true class; ms/ev: median process time per event"
    )
    print(
        f"{'K':>3} {'p':>3} {'data':>13} {'rows':>5} {'uniform':>8} {'sortition':>10} {'vw':>8} {'ratio':>7} "
        f"{'won':>5} {'E[sort]':>8} {'E[vw]':>8} {'s ms/ev':>8} {'vw ms/ev':>8}"
    )
    missed, won_total, total = [], 0, 0
    for data, X, y in sets:
        k, p, rows = int(y.max()) + 1, X.shape[1], len(y)
        ours, theirs = [], []
        for s in range(a.shuffles):
            order = np.random.default_rng(s).permutation(len(y))
            ours.append(
                run_sortition(X, y, order, s, a.update_every, a.bonus, a.l2, a.weighting, a.max_weight)
            )
            try:
                theirs.append(run_vw(X, y, order, s))
            except ImportError:
                print("vowpalwabbit not installed: pip install 'sortition[bench]'")
                return
        o = statistics.median(r.rewards.mean() for r in ours)
        v = statistics.median(r.rewards.mean() for r in theirs)
        won = sum(r.rewards.mean() >= q.rewards.mean() for r, q in zip(ours, theirs))
        won_total, total = won_total + won, total + a.shuffles
        if o < v:
            missed.append((k, p, data, o, v))
        ms = lambda runs: 1e3 * statistics.median(r.seconds for r in runs) / rows  # noqa: E731
        print(
            f"{k:3d} {p:3d} {data:>13} {rows:5d} {1 / k:8.3f} {o:10.4f} {v:8.4f} {o / v:6.3f}x "
            f"{won:2d}/{a.shuffles:<2d} "
            f"{np.mean([r.expected.mean() for r in ours]):8.4f} "
            f"{np.mean([r.expected.mean() for r in theirs]):8.4f} {ms(ours):8.3f} {ms(theirs):8.3f}",
            flush=True,
        )
    print(f"shuffles won: {won_total}/{total}")
    if missed:
        print(
            "goal missed (sortition below vw) on: "
            + ", ".join(f"K={k} p={p} data={d} ({o:.4f} < {v:.4f})" for k, p, d, o, v in missed)
        )
    else:
        print("goal met: sortition's median progressive reward >= vw's on every data set")


if __name__ == "__main__":
    main()
