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

Run: python benchmarks/bandit_bakeoff.py [--rows 3000 --shuffles 3 --update-every 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sortition.learning.events import BanditEvents  # noqa: E402
from sortition.learning.incremental import ColdStart, IncrementalBandit, numeric_layout  # noqa: E402
from sortition.learning.training import SqrtGamma  # noqa: E402
from sortition.serving.attributes import Attributes  # noqa: E402
from sortition.serving.bandits import evaluate_bandit  # noqa: E402

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


def run_sortition(
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    update_every: int,
    bonus: float,
    l2: float,
    weighting: str,
    max_weight: float = 20.0,
) -> float:
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
    total = 0.0
    for t, i in enumerate(order):
        numeric = dict(zip(names, X[i].tolist()))
        chosen = evaluate_bandit("bakeoff", f"row-{t}", Attributes(numeric, {}), actions, model)
        reward = 1.0 if chosen.action_key == classes[y[i]] else 0.0
        total += reward
        if learner.learn(
            BanditEvents(
                action=np.array([chosen.action_key], dtype=object),
                reward=np.array([reward]),
                action_probability=np.array([chosen.action_weight]),
                subject_numeric=(numeric,),
                subject_categorical=({},),
                action_numeric=({},),
                action_categorical=({},),
            )
        ):
            model = learner.model_.serving_model()
    return total / len(order)


def _vw_example(x: np.ndarray, k: int, label: tuple[int, float, float] | None = None) -> list[str]:
    lines = ["shared |s " + " ".join(f"x{j}:{v:.6g}" for j, v in enumerate(x))]
    for a in range(k):
        prefix = f"0:{label[1]:g}:{label[2]:.6g} " if label is not None and label[0] == a else ""
        lines.append(f"{prefix}|a a={a}")
    return lines


def run_vw(X: np.ndarray, y: np.ndarray, order: np.ndarray, seed: int) -> float:
    import vowpalwabbit

    k = int(y.max()) + 1
    vw = vowpalwabbit.Workspace(
        f"--cb_explore_adf --squarecb -q sa --gamma_scale {GAMMA_SCALE:g} --quiet --random_seed {seed}"
    )
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in order:
        pmf = np.asarray(vw.predict(_vw_example(X[i], k)), dtype=float)
        pmf = pmf / pmf.sum()
        a = int(rng.choice(k, p=pmf))
        reward = 1.0 if a == y[i] else 0.0
        total += reward
        vw.learn(_vw_example(X[i], k, (a, 1.0 - reward, pmf[a])))
    vw.finish()
    return total / len(order)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--shuffles", type=int, default=3, help="shuffled passes per data set (median taken)")
    ap.add_argument("--update-every", type=int, default=1, help="Sortition's events per update")
    ap.add_argument("--bonus", type=float, default=0.5, help="ColdStart bonus (reward units)")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--weighting", default="ips", choices=("none", "ips"))
    ap.add_argument("--max-weight", type=float, default=3.0, help="clip of the ips weights")
    ap.add_argument("--grid", default=None, help="K:p,K:p,... (default: the built-in grid)")
    a = ap.parse_args()
    grid = GRID
    if a.grid is not None:
        grid = tuple(tuple(int(v) for v in kp.split(":")) for kp in a.grid.split(","))
    print(
        f"supervised-to-bandit, {a.rows} rows, {a.shuffles} shuffles (median), "
        f"gamma = {GAMMA_SCALE:g} sqrt(t); sortition: update every {a.update_every}, "
        f"ColdStart({a.bonus:g}), l2 {a.l2:g}, weighting {a.weighting}"
        + (f" (clip {a.max_weight:g})" if a.weighting == "ips" else "")
    )
    print(
        f"{'K':>3} {'p':>3} {'uniform':>8} {'sortition':>10} {'vw':>8} {'ratio':>7} "
        f"{'s ms/ev':>8} {'vw ms/ev':>8}"
    )
    missed = []
    for k, p in grid:
        X, y = make_data(k, p, a.rows, seed=1000 * k + p)
        ours, theirs, t_ours, t_vw = [], [], [], []
        for s in range(a.shuffles):
            order = np.random.default_rng(s).permutation(len(y))
            t0 = time.perf_counter()
            ours.append(run_sortition(X, y, order, a.update_every, a.bonus, a.l2, a.weighting, a.max_weight))
            t1 = time.perf_counter()
            try:
                theirs.append(run_vw(X, y, order, s))
            except ImportError:
                print("vowpalwabbit not installed: pip install 'sortition[bench]'")
                return
            t2 = time.perf_counter()
            t_ours.append(t1 - t0)
            t_vw.append(t2 - t1)
        o, v = statistics.median(ours), statistics.median(theirs)
        if o < v:
            missed.append((k, p, o, v))
        print(
            f"{k:3d} {p:3d} {1 / k:8.3f} {o:10.4f} {v:8.4f} {o / v:6.3f}x "
            f"{1e3 * statistics.median(t_ours) / a.rows:8.3f} {1e3 * statistics.median(t_vw) / a.rows:8.3f}"
        )
    if missed:
        print(
            "goal missed (sortition below vw) on: "
            + ", ".join(f"K={k} p={p} ({o:.4f} < {v:.4f})" for k, p, o, v in missed)
        )
    else:
        print("goal met: sortition's progressive reward >= vw's on every data set")


if __name__ == "__main__":
    main()
