"""fit(): the one entry point from ExperimentData to a Posterior."""

from __future__ import annotations

import contextlib
import numbers
import time
from pathlib import Path

import numpy as np

from sortition.data import OUTCOME_KINDS, ExperimentData
from sortition.names import did_you_mean
from sortition.posterior.bcf import BCFSettings, fit_bcf
from sortition.posterior.calibration import Calibration, as_calibration
from sortition.posterior.result import Posterior
from sortition.posterior.stratified import fit_stratified
from sortition.posterior.warm import WarmStart

ENGINES = ("bcf", "stratified")
_ENGINE_SEED_LIMIT = 2**31 - 2


def fit(data: ExperimentData, outcome: str = "continuous", engine: str = "bcf", draws: int = 100,
        seed: int = 0, progress: bool = True, *, num_trees_mu: int = 100, num_trees_tau: int = 50,
        num_gfr: int = 10, num_burnin: int = 0, num_threads: int | None = None, strata=None,
        max_strata: int | None = None, prior_strength: float = 10.0, stochtree_params: dict | None = None,
        warm_start: WarmStart | None = None, warm_burnin: int = 10,
        calibration: Calibration | str | Path | None = None) -> Posterior:
    """Posterior over every visitor's K-1 contrasts (arm k minus control), in the metric's units.

    Args:
        data: validated experiment data (any K >= 2 arms).
        outcome: 'continuous' (Gaussian), 'binary' (0/1 conversions; probit, contrasts are differences in
            probability) or 'revenue' (>= 0; two-part: probit conversion on all visitors x log-normal
            order value on converters; contrasts are revenue per visitor, with 'conversion' and 'severity'
            components kept).
        engine: 'bcf' (stochtree Bayesian causal forest; recorded propensities are used, estimated only
            when absent) or 'stratified' (exact conjugate per stratum of categorical covariates; fast).
        draws: retained posterior draws S.
        seed: the same seed and thread count give the same draws (BCF: another ``num_threads`` gives
            other draws, as valid; ``info["num_threads"]`` records the count).
        progress: show a rich status line for each model being fitted.
        num_trees_mu, num_trees_tau, num_gfr, num_burnin, num_threads, stochtree_params: BCF settings
            (see :class:`~sortition.posterior.bcf.BCFSettings`).
        strata, max_strata, prior_strength: stratified-engine settings.
        warm_start: a previous BCF fit's ``Posterior.warm_start`` (e.g. last round's, on a subset of these
            rows): the sampler starts at its last draw and runs ``warm_burnin`` MCMC burn-in sweeps instead
            of the ``num_gfr`` grow-from-root sweeps. Used only when the covariate encoding, arms and
            outcome kind match (else the fit is cold); ``info["warm_start"]`` says which. None: cold fit.
            The stratified engine is exact and ignores it.
        calibration: a :class:`~sortition.posterior.calibration.Calibration` or the path of its JSON
            artifact (``sortition calibrate``): the posterior's intervals use its corrected levels;
            ``info["calibration"]`` records which one was applied.
    """
    if not isinstance(data, ExperimentData):
        raise TypeError(f"fit expects ExperimentData, got {type(data).__name__}; build it with "
                        "ExperimentData.from_frame(df, arm=..., outcome=...).")
    if outcome not in OUTCOME_KINDS:
        raise ValueError(f"outcome={outcome!r} is not a known kind{did_you_mean(outcome, OUTCOME_KINDS)}; "
                         f"use one of {OUTCOME_KINDS}.")
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not known{did_you_mean(engine, ENGINES)}; "
                         f"use one of {ENGINES}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if int(draws) < 1:
        raise ValueError(f"draws must be a positive integer, got {draws}.")
    if warm_start is not None and not isinstance(warm_start, WarmStart):
        raise TypeError(f"warm_start must be a previous fit's Posterior.warm_start (a WarmStart) or None, "
                        f"got {type(warm_start).__name__}.")
    if isinstance(warm_burnin, bool) or not isinstance(warm_burnin, numbers.Integral) or warm_burnin < 0:
        raise ValueError(f"warm_burnin must be a non-negative integer, got {warm_burnin!r}.")
    data.check_outcome(outcome)
    if engine == "bcf":
        _check_bcf_size(data, outcome, int(draws))
    calibration_ = as_calibration(calibration)
    t0 = time.perf_counter()
    if engine == "bcf":
        settings = BCFSettings(num_trees_mu, num_trees_tau, num_gfr, num_burnin, int(draws), num_threads,
                               dict(stochtree_params or {}), int(warm_burnin))
        # stochtree takes a C int seed (and the severity model uses seed + 1): fold larger seeds in.
        out = fit_bcf(data, outcome, settings, int(seed) % _ENGINE_SEED_LIMIT, _progress(progress), warm_start)
        warm = out["info"]["warm_start"] == "warm"  # the sweeps actually run: a warm fit runs no GFR
        out["info"].update(num_trees_mu=num_trees_mu, num_trees_tau=num_trees_tau, num_gfr=0 if warm else num_gfr,
                           num_burnin=settings.warm_burnin if warm else num_burnin, num_threads=settings.threads())
    else:
        out = fit_stratified(data, outcome, int(draws), int(seed), strata, max_strata, prior_strength)
    out["info"].update(seed=int(seed), draws=int(draws), seconds=time.perf_counter() - t0)
    if calibration_ is not None:
        out["info"]["calibration"] = {"path": None if isinstance(calibration, Calibration) else str(calibration),
                                      "n_experiments": calibration_.n_experiments}
    return Posterior.from_draws(np.asarray(out["contrasts"]), data=data, outcome=outcome,
                                components=out.get("components"), baseline=out.get("baseline"), info=out["info"],
                                rows=out.get("rows"), warm_start=out.get("warm_start"), calibration=calibration_,
                                residuals=out.get("residuals"))


BCF_MAX_DRAW_BYTES = 2 * 1024**3  # the BCF engine's per-visitor draws: (n, S, K-1) float32, per component


def _check_bcf_size(data: ExperimentData, outcome: str, draws: int) -> None:
    """Refuse a BCF fit whose per-visitor draws would not fit in memory, naming the limit and the way out.

    The forest predicts every visitor's contrasts for every draw, so its draws grow as n x S x (K-1), plus
    the n x S one-step residuals (three times that for revenue: the total, conversion and severity); the
    stratified engine keeps one set per stratum instead."""
    # contrast draws (K-1 per draw) and the one-step residuals (one per draw), per component
    per_row = draws * data.n_arms * 4 * (3 if outcome == "revenue" else 1)
    limit = BCF_MAX_DRAW_BYTES // per_row
    if data.n > limit:
        raise ValueError(
            f"the BCF engine would hold {data.n * per_row / 1024**3:.1f} GB of posterior draws for {data.n:,} "
            f"visitors ({draws} draws, {data.n_arms} arms, {outcome}); its limit is "
            f"{BCF_MAX_DRAW_BYTES / 1024**3:.0f} GB, i.e. at most {limit:,} visitors with these settings. "
            "Use engine='stratified' (--engine stratified: per-stratum sufficient statistics, any size), "
            "fewer draws, or analyze a sample of the rows"
        )


def _progress(enabled: bool):
    """A context-manager factory showing one rich status line per fitting step (no-op when disabled)."""
    if not enabled:
        return lambda label: contextlib.nullcontext()

    @contextlib.contextmanager
    def step(label: str):
        from rich.console import Console

        console = Console(stderr=True)
        t = time.perf_counter()
        with console.status(f"[bold]fitting[/] {label} ..."):
            yield
        console.print(f"  fitted {label} in {time.perf_counter() - t:.1f}s")

    return step
