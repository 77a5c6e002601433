"""Engine "bcf": stochtree's Bayesian causal forest, K-1 treatment columns, probit for conversions."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from sortition.data import ExperimentData
from sortition.posterior.propensity import CLIP, propensity_matrix
from sortition.posterior.quiet import quiet_stochtree
from sortition.posterior.warm import KEPT_DRAWS, ONE_COLUMN, WarmStart, last_draw_json

MAIN = "contrast"  # the key of the main contrast's residuals (components use their own names)
STOCHTREE_MIN_SAMPLES_LEAF = 5  # stochtree's default for both forests

# Passive OpenMP waits unless the user chose otherwise: on a busy machine, spinning worker threads slowed
# stochtree's samplers many-fold in our measurements (read when stochtree's OpenMP runtime first loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def default_threads() -> int:
    """Threads when none are given, for the library and the CLI alike: ``OMP_NUM_THREADS`` when set
    (a positive integer), else every core."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BCFSettings:
    """Forest sizes and sampler lengths (defaults chosen for speed on a laptop; all overridable).

    num_trees_mu / num_trees_tau: prognostic and treatment-effect forests (stochtree's own defaults
    are 250 / 100; 100 / 50 recover the scenario effects as well at about half the time).
    num_gfr: grow-from-root warm-start sweeps (discarded). num_burnin: MCMC burn-in after warm start.
    draws: retained MCMC draws S. num_threads: None = :func:`default_threads`.
    extra: further stochtree keyword dicts, merged last: {"general_params": {...}, ...}.
    warm_burnin: MCMC burn-in of a warm-started fit (no grow-from-root sweeps; see
    :mod:`sortition.posterior.warm`).
    """

    num_trees_mu: int = 100
    num_trees_tau: int = 50
    num_gfr: int = 10
    num_burnin: int = 0
    draws: int = 100
    num_threads: int | None = None
    extra: dict = field(default_factory=dict)
    warm_burnin: int = 10

    def threads(self) -> int:
        return int(self.num_threads or default_threads())

    def min_rows(self) -> int:
        """Fewest rows a forest can be fitted on: stochtree needs more than twice ``min_samples_leaf``."""
        leaf = max(int(self.extra.get(forest, {}).get("min_samples_leaf", STOCHTREE_MIN_SAMPLES_LEAF))
                   for forest in ("prognostic_forest_params", "treatment_effect_forest_params"))
        return 2 * leaf + 1


@dataclass(frozen=True)
class ForestDraws:
    """Posterior draws of one BCF fit evaluated at every visitor (float64, model scale).

    mu: (n, S) prognostic function; tau: (n, S, K-1) arm effects; sigma2: (S,) error variance or None.
    last_draw: the fit's stochtree JSON at its last draw (what the next round warm-starts from).
    """

    mu: np.ndarray
    tau: np.ndarray
    sigma2: np.ndarray | None
    last_draw: str | None


def fit_bcf_forest(x: np.ndarray, arm_index: np.ndarray, y: np.ndarray, n_arms: int, propensity: np.ndarray,
                   settings: BCFSettings, seed: int, probit: bool, rows: np.ndarray | None = None,
                   previous: str | None = None) -> ForestDraws:
    """One stochtree BCF fit on ``rows`` (default all), predicted at every visitor.

    Treatments are the K-1 indicator columns Z_k = 1[arm == k], so tau_k(x) is arm k minus control.
    The fitted rows' draws are stochtree's own in-sample arrays (``mu_hat_train``, ``tau_hat_train``:
    model scale, tau_0 folded in); only the visitors outside ``rows`` are predicted after sampling.
    ``previous``: a one-draw stochtree JSON (:func:`last_draw_json`) to start the sampler from; the fit
    then runs ``settings.warm_burnin`` MCMC burn-in sweeps instead of the grow-from-root sweeps.
    """
    from stochtree import BCFModel, OutcomeModel

    n, k1 = x.shape[0], n_arms - 1
    z = (arm_index[:, None] == np.arange(1, n_arms)[None, :]).astype(np.float64)
    train = slice(None) if rows is None else rows
    general = {"random_seed": int(seed), "num_threads": settings.threads(), "propensity_covariate": "prognostic",
               "adaptive_coding": False}
    if probit:
        general["outcome_model"] = OutcomeModel(outcome="binary", link="probit")
    general.update(settings.extra.get("general_params", {}))
    kw = dict(
        X_train=x[train], Z_train=z[train], y_train=np.asarray(y[train], dtype=np.float64),
        propensity_train=propensity[train], num_gfr=settings.num_gfr, num_burnin=settings.num_burnin,
        num_mcmc=settings.draws, general_params=general,
        prognostic_forest_params={"num_trees": settings.num_trees_mu,
                                  **settings.extra.get("prognostic_forest_params", {})},
        treatment_effect_forest_params={"num_trees": settings.num_trees_tau,
                                        **settings.extra.get("treatment_effect_forest_params", {})},
    )
    if previous is not None:  # stochtree starts at the previous fit's last draw
        kw.update(num_gfr=0, num_burnin=settings.warm_burnin, previous_model_json=previous,
                  previous_model_warmstart_sample_num=KEPT_DRAWS - 1)
    # Only the visitors outside the fitted rows are predicted after sampling (treatment set to control):
    # stochtree computes the fitted rows' draws anyway (same forests and terms, equal to rounding, 1e-14).
    others = np.array([], dtype=np.intp) if rows is None else np.setdiff1d(np.arange(n), rows)
    if others.size:
        kw.update(X_test=x[others], Z_test=np.zeros((others.size, k1)), propensity_test=propensity[others])
    model = BCFModel()
    with quiet_stochtree():
        model.sample(**kw)
    s = settings.draws
    n_fit = n if rows is None else len(rows)
    # reshape: stochtree squeezes its arrays (K = 2: tau is (n, S))
    mu = np.asarray(model.mu_hat_train).reshape(n_fit, s)
    tau = np.asarray(model.tau_hat_train).reshape(n_fit, s, k1)
    if rows is not None:  # every visitor's draws, in visitor order (all rows: stochtree's arrays, no copy)
        mu_fit, tau_fit = mu, tau
        mu, tau = np.empty((n, s)), np.empty((n, s, k1))
        mu[rows], tau[rows] = mu_fit, tau_fit
        if others.size:
            mu[others] = np.asarray(model.mu_hat_test).reshape(others.size, s)
            tau[others] = np.asarray(model.tau_hat_test).reshape(others.size, s, k1)
    sigma2 = None if probit else np.asarray(model.global_var_samples, dtype=np.float64).reshape(s)
    return ForestDraws(mu, tau, sigma2, last_draw_json(model) if x.shape[1] > 1 else None)  # see ONE_COLUMN


def fit_bcf(data: ExperimentData, outcome: str, settings: BCFSettings, seed: int, progress,
            warm_start: WarmStart | None = None) -> dict:
    """Contrast draws (n, S, K-1) in metric units, plus components, the control-mean draws, the
    :class:`WarmStart` of this fit (``warm_start``: the previous fit's, used when compatible) and the
    one-step residuals: per key (``MAIN``, then each component), (n, S) per draw the row's outcome minus
    the draw's mean for the arm it received, divided by the probability of that arm (metric units / 1)."""
    x = data.design_matrix()
    k = data.n_arms
    columns = tuple(data.encoding.names)
    converters = _check_rows(data, outcome, settings.min_rows(), x.shape[1])
    if warm_start is None:
        reason = "no previous fit" if x.shape[1] > 1 else ONE_COLUMN
    else:
        reason = warm_start.mismatch(outcome, columns, k)
    previous = {} if reason is not None else dict(warm_start.models)
    t0 = time.perf_counter()
    with progress("propensities"):
        prop, source = propensity_matrix(data, x, seed, settings.threads())
    info = {"engine": "bcf", "propensity": source, "seconds_propensity": time.perf_counter() - t0,
            "warm_start": "warm" if reason is None else f"cold ({reason})",
            # Posterior.average_effects: its residuals divide by these propensities
            "average_effect": f"one-step ({source} propensities)"}
    y = data.outcome
    a = data.arm_index
    p_received = received_propensity(data, prop)
    if outcome == "continuous":
        with progress(f"BCF, {k} arms, continuous"):
            f = fit_bcf_forest(x, data.arm_index, y, k, prop, settings, seed, probit=False,
                               previous=previous.get("outcome"))
        m = f.mu + _received(f.tau, a)  # (n, S) outcome mean of the arm each row received
        return dict(contrasts=f.tau, baseline=f.mu.mean(axis=0), info=info,
                    residuals={MAIN: (y[:, None] - m) / p_received[:, None]},
                    warm_start=_warm(outcome, columns, k, {"outcome": f.last_draw}))
    with progress(f"probit BCF, {k} arms, conversion"):
        conv = fit_bcf_forest(x, data.arm_index, (y > 0).astype(float), k, prop, settings, seed, probit=True,
                              previous=previous.get("conversion"))
    p0 = ndtr(conv.mu)  # (n, S) control conversion probability
    pk = ndtr(conv.mu[:, :, None] + conv.tau)  # (n, S, K-1)
    dp = pk - p0[:, :, None]
    # (n, S) P(convert) of the arm each row received
    p_arm = np.where(a[:, None] == 0, p0, _received(pk, a, zero=False))
    conv_residual = ((y > 0)[:, None] - p_arm) / p_received[:, None]
    if outcome == "binary":
        return dict(contrasts=dp, baseline=p0.mean(axis=0), info=info, residuals={MAIN: conv_residual},
                    warm_start=_warm(outcome, columns, k, {"conversion": conv.last_draw}))
    with progress(f"BCF, {k} arms, log order value on {converters.size} converters"):
        sev = _severity(x, data, y, k, prop, settings, seed, converters, previous.get("severity"))
    half_s2 = 0.5 * sev.sigma2[None, :]
    v0 = np.exp(sev.mu + half_s2)  # (n, S) expected order value under control
    vk = np.exp(sev.mu[:, :, None] + sev.tau + half_s2[:, :, None])
    rev = pk * vk - (p0 * v0)[:, :, None]
    v_arm = np.where(a[:, None] == 0, v0, _received(vk, a, zero=False))  # (n, S) E[order value], received arm
    residuals = {MAIN: (y[:, None] - p_arm * v_arm) / p_received[:, None], "conversion": conv_residual,
                 # E[order value | converted] averages over visitors: converters weighted by 1 / P(convert)
                 "severity": np.where((y > 0)[:, None], y[:, None] - v_arm, 0.0)
                 / (p_received[:, None] * p_arm)}
    return dict(contrasts=rev, baseline=(p0 * v0).mean(axis=0), info=info, residuals=residuals,
                components={"conversion": dp, "severity": vk - v0[:, :, None]},
                warm_start=_warm(outcome, columns, k, {"conversion": conv.last_draw, "severity": sev.last_draw}))


class TooLittleData(ValueError):
    """Too few rows (or converters) for the BCF engine's forests: more data, or another engine."""


def _check_rows(data: ExperimentData, outcome: str, min_rows: int, n_columns: int) -> np.ndarray | None:
    """Refuse data the forests cannot be fitted on, before any fitting; the converters' rows (revenue)."""
    if n_columns == 0:
        raise ValueError("the data have no covariate columns: the BCF engine learns how effects vary with "
                         "them (device, country, ...). Add some, or use engine='stratified' for the average "
                         "effect.")
    if data.n < min_rows:
        raise TooLittleData(f"the BCF engine needs at least {min_rows} rows (more than twice stochtree's "
                         f"min_samples_leaf); the data have {data.n}. Collect more data, or use "
                         "engine='stratified'.")
    if outcome != "revenue":  # some conversions, and (binary) some non-conversions: fit's check_outcome
        return None
    converters = np.flatnonzero(data.outcome > 0)
    if converters.size == data.n:
        raise ValueError(f"outcome='revenue' is above 0 in all {data.n:,} rows: the BCF engine's conversion "
                         "model needs visitors who did not convert. Use outcome='continuous' (effects on the "
                         "amount), or engine='stratified'.")
    arms_seen = np.bincount(data.arm_index[converters], minlength=data.n_arms)
    if np.any(arms_seen < 2) or converters.size < min_rows:
        raise TooLittleData(f"outcome='revenue' fits the order value on the converters (outcome > 0): it "
                            f"needs at least {min_rows} of them and 2 in every arm; arms {data.arms} have "
                            f"{arms_seen.tolist()}. Collect more data or use outcome='binary'.")
    return converters


def received_propensity(data: ExperimentData, prop: np.ndarray) -> np.ndarray:
    """(n,) probability of the arm each row received: the recorded one when the data have it (exact in
    Sortition's loop: given the history, under an adaptive design), else read off the estimated (n, K-1)
    treatment probabilities ``prop`` (control: one minus their sum), clipped to ``CLIP``."""
    if data.propensity is not None:
        return np.clip(np.asarray(data.propensity, dtype=np.float64), CLIP[0], 1.0)
    a = data.arm_index
    treated = prop[np.arange(data.n), np.maximum(a, 1) - 1]
    return np.clip(np.where(a == 0, 1.0 - prop.sum(axis=1), treated), *CLIP)


def _received(per_arm: np.ndarray, arm_index: np.ndarray, zero: bool = True) -> np.ndarray:
    """(n, S) the treatment entry of (n, S, K-1) ``per_arm`` for the arm each row received; control rows
    get 0 (``zero``) or a placeholder the caller replaces."""
    col = np.maximum(arm_index, 1) - 1
    out = np.take_along_axis(per_arm, col[:, None, None], axis=2)[:, :, 0]
    return np.where(arm_index[:, None] == 0, 0.0, out) if zero else out


def _warm(outcome: str, columns: tuple[str, ...], k: int, models: dict[str, str | None]) -> WarmStart | None:
    """This fit's warm start for the next one; None when a model kept too few draws to start from."""
    if any(text is None for text in models.values()):
        return None
    return WarmStart(outcome, columns, k, models)


def _severity(x, data, y, k, prop, settings, seed, converters, previous) -> ForestDraws:
    log_y = np.zeros_like(y)
    log_y[converters] = np.log(y[converters])
    return fit_bcf_forest(x, data.arm_index, log_y, k, prop, settings, seed + 1, probit=False, rows=converters,
                          previous=previous)
