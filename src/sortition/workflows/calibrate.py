"""``sortition calibrate``: a sweep of simulated experiments measuring interval coverage, on Dask.

Each task is one simulated experiment (scenario: the library's or a user's, see
:mod:`sortition.scenarios.user`; visitors, K, outcome kind, uniform or adaptive data, seed): the data are drawn with known truth, the posterior is fitted, and :func:`measure` records the
coverage of per-visitor, per-segment and average-effect intervals at every level of
``calibration.LEVELS`` and the (P(best arm), truly best) pairs. Results go to a DuckDB file as each
task finishes, keyed by the task, so an interrupted sweep continues where it stopped. The fitted
correction (:func:`sortition.posterior.calibration.fit_calibration`) is saved as a JSON artifact.

"adaptive" data imitate the loop's: rounds of visitors assigned by segment-dependent allocations that
change every round (Dirichlet draws over the treatments per device; control between half and twice
``control_share``), with the propensities recorded, as the loop records them.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sortition.data import OUTCOME_KINDS, ExperimentData
from sortition.names import did_you_mean, listing
from sortition.policy import arm_win_frequencies, best_arms
from sortition.posterior import fit
from sortition.posterior.bcf import BCFSettings
from sortition.posterior.calibration import LEVELS, Calibration, coverage_at_levels, fit_calibration
from sortition.posterior.fit import ENGINES
from sortition.scenarios import Scenario, make_scenario
from sortition.scenarios.scenario import LIBRARY, ScenarioDefinition

SEGMENT_COLUMNS = ("device", "channel")  # segments measured: each level of these with >= MIN_SEGMENT_SHARE
MIN_SEGMENT_SHARE = 0.05


@dataclass(frozen=True)
class SweepTask:
    """One simulated experiment of the sweep (its ``key`` identifies it in the results file).

    ``scenario`` is a library name, or a user's scenario whose ``definition`` (from
    :func:`sortition.scenarios.user.load_scenario_file`) travels with the task to the Dask worker; its
    ``source`` and ``digest`` (SHA-256 of the file) are part of the key, so a changed file is a new task."""

    scenario: str
    n: int
    arms: int
    outcome: str
    adaptive: bool
    seed: int
    engine: str = "bcf"
    fit_options: dict = field(default_factory=dict)
    rounds: int = 3
    control_share: float = 0.1
    source: str = "library"
    digest: str = ""
    definition: ScenarioDefinition | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        doc = {k: v for k, v in asdict(self).items() if k != "definition"}
        if self.source == "library":  # library tasks keep the keys of sweeps stored before user scenarios
            del doc["source"], doc["digest"]
        return json.dumps(doc, sort_keys=True)

    def scenario_object(self) -> Scenario:
        """The task's world with its K arms and outcome kind."""
        if self.definition is None:
            return make_scenario(self.scenario, self.arms, self.outcome)
        return self.definition.make(self.arms, self.outcome)


def sweep_tasks(scenarios: Sequence[str | ScenarioDefinition], sizes: Sequence[int], arms: Sequence[int],
                outcomes: Sequence[str], adaptive: Sequence[bool], seeds: int, engine: str = "bcf",
                fit_options: dict | None = None) -> list[SweepTask]:
    """Every combination of the axes, ``seeds`` seeds each. A scenario with fixed arms runs at its own K
    only, whatever ``arms`` holds (another K would be mislabelled, or fail on the cluster).

    ``scenarios``: library names or definitions (the library's, or a user's from
    :func:`sortition.scenarios.user.resolve_scenarios`). Every axis is checked before any task runs."""
    _check_axes(sizes, arms, outcomes, engine, fit_options or {})
    worlds = [s if isinstance(s, ScenarioDefinition) else _library(s) for s in scenarios]
    out = []
    for world in worlds:
        own_k = (len(world.fixed_arms),) if world.fixed_arms is not None else arms
        for n, k, outcome, adapt, seed in itertools.product(sizes, own_k, outcomes, adaptive, range(seeds)):
            user = world.source != "library"
            out.append(SweepTask(world.name, int(n), int(k), outcome, bool(adapt), int(seed), engine,
                                 dict(fit_options or {}), source=world.source, digest=world.digest,
                                 definition=world if user else None))
    return out


def _check_axes(sizes: Sequence[int], arms: Sequence[int], outcomes: Sequence[str], engine: str,
                fit_options: dict) -> None:
    """Refuse a sweep axis that would fail in every task of it (on a cluster, after minutes)."""
    if engine not in ENGINES:
        raise ValueError(f"engine: {engine!r} is not an engine{did_you_mean(engine, ENGINES)}; "
                         f"use {listing(ENGINES)}")
    for name, values in (("sizes", sizes), ("arms", arms), ("outcomes", outcomes)):
        if not len(values):
            raise ValueError(f"{name}: give at least one value")
    for outcome in outcomes:
        if outcome not in OUTCOME_KINDS:
            raise ValueError(f"outcomes: {outcome!r} is not an outcome kind"
                             f"{did_you_mean(outcome, OUTCOME_KINDS)}; use {listing(OUTCOME_KINDS)}")
    smallest = 2
    if engine == "bcf":
        smallest = BCFSettings(extra=fit_options.get("stochtree_params") or {}).min_rows()
    small = [n for n in sizes if n < smallest]
    if small:
        raise ValueError(f"sizes: {small} visitors are too few: the {engine} engine needs at least "
                         f"{smallest} per experiment")
    few = [k for k in arms if k < 2]
    if few:
        raise ValueError(f"arms: {few} arms are too few: an experiment needs at least 2 (control first)")


def _library(name: str) -> ScenarioDefinition:
    if name not in LIBRARY:
        make_scenario(name)  # raises, naming the nearest library scenario
    return LIBRARY[name]


# --- one task ----------------------------------------------------------------------------------------
def simulate_data(task: SweepTask) -> tuple[ExperimentData, np.ndarray, pd.DataFrame, Scenario]:
    """(data, true contrasts (n, K-1), visitors, scenario) of one task."""
    scenario = task.scenario_object()
    rng = np.random.default_rng([task.seed, 7])
    k = scenario.n_arms
    visitors = scenario.sample_visitors(task.n, rng)
    if task.adaptive:
        rounds = np.minimum(np.arange(task.n) * task.rounds // task.n, task.rounds - 1)
        prop = np.empty((task.n, k))
        for r in range(task.rounds):
            for level in pd.unique(visitors["device"]):
                rows = (rounds == r) & (visitors["device"] == level).to_numpy()
                weights = rng.dirichlet(np.ones(k - 1))
                control = min(0.5, task.control_share * rng.uniform(0.5, 2.0))
                prop[rows] = np.concatenate([[control], (1 - control) * weights])
        prop = np.maximum(prop, 0.01)
        prop /= prop.sum(axis=1, keepdims=True)
        arm_index = np.minimum((rng.random(task.n)[:, None] > np.cumsum(prop, axis=1)).sum(axis=1), k - 1)
    else:
        prop = np.full((task.n, k), 1.0 / k)
        rounds = np.zeros(task.n, dtype=int)
        arm_index = rng.integers(0, k, task.n)
    y = scenario.sample_outcomes(visitors, arm_index, rng)
    frame = pd.concat([pd.DataFrame({"subject": [f"v{i}" for i in range(task.n)],
                                     "arm": np.asarray(scenario.arms, dtype=object)[arm_index], "y": y,
                                     "propensity": prop[np.arange(task.n), arm_index], "round": rounds}),
                       visitors], axis=1)
    data = ExperimentData.from_frame(frame, arm="arm", outcome="y", subject="subject", arms=scenario.arms,
                                     propensity="propensity", round="round",
                                     covariates=list(visitors.columns))
    return data, scenario.truth(visitors).contrasts, visitors, scenario


def measure(posterior: Any, truth: np.ndarray, visitors: pd.DataFrame) -> dict[str, Any]:
    """Coverage at every level of ``LEVELS`` per interval kind, their weights (counts of effects), and
    (P(best), truly best) pairs per measured segment and arm."""
    draws = posterior.contrast_draws()  # (n, S, K-1)
    n, s, k1 = draws.shape
    every = min(n, 2000)  # visitors measured: a fixed subsample bounds the cost
    rows = np.linspace(0, n - 1, every).astype(int)
    visitor_draws = np.moveaxis(draws[rows], 2, 1).reshape(-1, s)  # (every * (K-1), S)
    masks = []
    for col in SEGMENT_COLUMNS:
        if col in visitors.columns:
            for level in pd.unique(visitors[col].dropna()):
                m = (visitors[col] == level).to_numpy()
                if m.mean() >= MIN_SEGMENT_SHARE:
                    masks.append(m)
    masks = np.stack(masks) if masks else np.zeros((0, n), dtype=bool)
    seg_means = posterior.segments_mean_contrasts(masks) if len(masks) else np.zeros((0, s, k1))
    seg_truth = np.stack([truth[m].mean(axis=0) for m in masks]) if len(masks) else np.zeros((0, k1))
    avg = posterior.average_effects()  # what lift_summary reports (one-step where the engine keeps residuals)
    p_best = []
    for means, t in zip(seg_means, seg_truth, strict=True):
        win = arm_win_frequencies(means, k1 + 1)
        best = int(best_arms(t))
        p_best += [[float(win[a]), float(a == best)] for a in range(k1 + 1)]
    coverage = {
        "visitor": coverage_at_levels(visitor_draws, truth[rows].reshape(-1)),
        "average": coverage_at_levels(avg.T, truth.mean(axis=0)),
    }
    weights = {"visitor": visitor_draws.shape[0], "average": k1}
    if len(masks):
        coverage["segment"] = coverage_at_levels(np.moveaxis(seg_means, 2, 1).reshape(-1, s), seg_truth.reshape(-1))
        weights["segment"] = seg_truth.size
    return {"coverage": {k: v.tolist() for k, v in coverage.items()}, "weights": weights, "p_best": p_best}


def run_task(task: SweepTask, calibration: Calibration | None = None) -> dict[str, Any]:
    """Simulate, fit and measure one task (pure given the task; runs on a Dask worker)."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    t0 = time.perf_counter()
    data, truth, visitors, _ = simulate_data(task)
    options = {"progress": False, "num_threads": 1, **task.fit_options} if task.engine == "bcf" else {
        "progress": False, **task.fit_options}
    posterior = fit(data, outcome=task.outcome, engine=task.engine, seed=task.seed, **options)
    if calibration is not None:
        posterior = _with_calibration(posterior, calibration)
    out = measure(posterior, truth, visitors)
    out["seconds"] = time.perf_counter() - t0
    return out


def _with_calibration(posterior: Any, calibration: Calibration) -> Any:
    from dataclasses import replace

    return replace(posterior, calibration=calibration)


# --- the sweep -----------------------------------------------------------------------------------------
def _connect(db: str | Path):
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE IF NOT EXISTS calibration_runs (task VARCHAR PRIMARY KEY, result VARCHAR, "
                "seconds DOUBLE)")
    # which world each result is of: the scenario, where it came from, the SHA-256 of a user's file
    for column in ("scenario", "source", "digest"):
        con.execute(f"ALTER TABLE calibration_runs ADD COLUMN IF NOT EXISTS {column} VARCHAR")
    return con


def done_tasks(db: str | Path) -> set[str]:
    """Keys of the tasks whose results the file already holds."""
    with _connect(db) as con:
        return {row[0] for row in con.execute("SELECT task FROM calibration_runs").fetchall()}


def stale_results(db: str | Path, tasks: Iterable[SweepTask]) -> dict[tuple[str, str], int]:
    """(scenario, source) -> how many stored results are of another version of that user scenario's file
    than ``tasks`` run (a changed file: those results are not used, the tasks run again)."""
    current = {(t.scenario, t.source): t.digest for t in tasks if t.source != "library"}
    if not current:
        return {}
    with _connect(db) as con:
        rows = con.execute("SELECT scenario, source, digest, count(*) FROM calibration_runs "
                           "WHERE source IS NOT NULL AND source <> 'library' GROUP BY ALL").fetchall()
    return {(name, source): int(count) for name, source, digest, count in rows
            if (name, source) in current and digest != current[(name, source)]}


def load_results(db: str | Path, tasks: Iterable[SweepTask] | None = None) -> list[dict[str, Any]]:
    """The stored results (of ``tasks`` only, when given)."""
    keys = None if tasks is None else {t.key for t in tasks}
    with _connect(db) as con:
        rows = con.execute("SELECT task, result FROM calibration_runs ORDER BY task").fetchall()
    # each result's assignment design, from its task, for the per-design curves
    return [{**json.loads(r), "design": "adaptive" if json.loads(k)["adaptive"] else "uniform"}
            for k, r in rows if keys is None or k in keys]


def run_sweep(tasks: Sequence[SweepTask], db: str | Path, *, scheduler: str | None = None, workers: int = 1,
              processes: bool = True, calibration: Calibration | None = None,
              progress: Callable[[int, int], None] | None = None) -> int:
    """Run the tasks not yet in ``db`` on Dask (a LocalCluster of ``workers`` single-threaded workers, or
    the cluster at ``scheduler``); each result is written as it arrives. Returns the number run now."""
    from dask.distributed import Client, LocalCluster, as_completed

    todo = [t for t in tasks if t.key not in done_tasks(db)]
    if not todo:
        return 0
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                                  dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client, _connect(db) as con:
            futures = {client.submit(run_task, t, calibration, pure=False): t for t in todo}
            for i, future in enumerate(as_completed(futures), 1):
                result = future.result()
                task = futures[future]
                con.execute("INSERT OR REPLACE INTO calibration_runs (task, result, seconds, scenario, source, "
                            "digest) VALUES (?, ?, ?, ?, ?, ?)", [task.key, json.dumps(result), result["seconds"],
                                                                  task.scenario, task.source, task.digest])
                if progress is not None:
                    progress(i, len(todo))
    finally:
        if cluster is not None:
            cluster.close()
    return len(todo)


def calibrate(tasks: Sequence[SweepTask], db: str | Path, out: str | Path, *, narrow: bool = False,
              **sweep: Any) -> Calibration:
    """Run (or resume) the sweep, fit the correction from its results and save the artifact at ``out``
    (``narrow``: see :class:`~sortition.posterior.calibration.Calibration`)."""
    run_sweep(tasks, db, **sweep)
    user = {t.scenario: {"source": t.source, "sha256": t.digest} for t in tasks if t.source != "library"}
    meta = {"scenarios": sorted({t.scenario for t in tasks}), "user_scenarios": user,
            "sizes": sorted({t.n for t in tasks}),
            "arms": sorted({t.arms for t in tasks}), "outcomes": sorted({t.outcome for t in tasks}),
            "adaptive": sorted({t.adaptive for t in tasks}), "engine": sorted({t.engine for t in tasks})}
    calibration = fit_calibration(load_results(db, tasks), meta, narrow)
    calibration.save(out)
    return calibration


@dataclass(frozen=True)
class Coverage:
    """Pooled actual coverage of one interval kind at one nominal level, with its standard error.

    ``se`` treats experiments as the independent units (effects of one experiment share its data): the
    cluster-robust SE of the effect-weighted mean of per-experiment coverages."""

    actual: float
    se: float
    experiments: int
    effects: int


def _pooled(curves: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(weighted mean, cluster-robust SE) of per-experiment values ``curves`` (m,) with weights (m,)."""
    total = weights.sum()
    mean = float(np.sum(weights * curves) / total)
    m = len(curves)
    se = float(np.sqrt(m / (m - 1) * np.sum(weights**2 * (curves - mean) ** 2)) / total) if m > 1 else float("nan")
    return mean, se


def _kind_rows(results: Sequence[dict[str, Any]], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(m, L) per-experiment coverage curves of ``kind`` and their (m,) effect counts."""
    rows = [(r["coverage"][kind], r["weights"][kind]) for r in results
            if kind in r["coverage"] and r["weights"].get(kind, 0) > 0]
    if not rows:
        return np.zeros((0, len(LEVELS))), np.zeros(0)
    return np.asarray([c for c, _ in rows], dtype=np.float64), np.asarray([w for _, w in rows], dtype=np.float64)


def coverage_table(results: Sequence[dict[str, Any]], levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
                   calibration: Calibration | None = None) -> dict[str, dict[float, Coverage]]:
    """Per kind and nominal level, the pooled actual coverage of these results' intervals; with a
    ``calibration``, of the intervals it corrects (each experiment's coverage curve read at the corrected
    level, linear between grid levels: no refit needed)."""
    out = {}
    for kind in ("visitor", "segment", "average"):
        curves, weights = _kind_rows(results, kind)
        if not len(weights) or (calibration is not None and kind not in calibration.coverage):
            continue
        out[kind] = {}
        designs = [r.get("design") for r in results if kind in r["coverage"] and r["weights"].get(kind, 0) > 0]
        for lv in levels:
            at = [lv if calibration is None else calibration.level(kind, lv, d) for d in designs]
            actual, se = _pooled(np.array([np.interp(a, LEVELS, c) for a, c in zip(at, curves, strict=True)]),
                                 weights)
            out[kind][lv] = Coverage(actual, se, len(weights), int(weights.sum()))
    return out


def held_out_table(results: Sequence[dict[str, Any]], calibration: Calibration,
                   levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95)) -> dict[str, dict[float, tuple[Coverage, Coverage]]]:
    """Per kind and nominal level, (coverage before, after the correction) on other experiments' results
    (e.g. a sweep of scenarios left out of the fit)."""
    before, after = coverage_table(results, levels), coverage_table(results, levels, calibration)
    return {kind: {lv: (before[kind][lv], after[kind][lv]) for lv in levels} for kind in after}
