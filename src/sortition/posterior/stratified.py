"""Engine "stratified": exact conjugate posteriors per stratum of categorical covariates.

Every (stratum, arm) cell gets a conjugate posterior whose prior is centred on that arm's pooled
estimate with ``prior_strength`` pseudo-observations (so sparse strata shrink toward the arm's overall
behaviour): Normal-Inverse-Gamma for continuous outcomes, Beta-Binomial for conversions, and for revenue
Beta-Binomial conversion times a log-normal order value with a Normal-Inverse-Gamma log-scale model.
Draws are exact (no MCMC); every visitor in a stratum shares its stratum's draws, so the posterior is
returned in grouped form (one set of draws per stratum and the stratum of each visitor): memory is
O(strata x draws + visitors), and 10M visitors cost no more draws than 10k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sortition.data import ExperimentData
from sortition.data.encoding import is_categorical


def strata_of(data: ExperimentData, strata: Sequence[str] | None, max_strata: int | None) -> tuple[np.ndarray, list]:
    """(n,) stratum index per visitor and the columns used.

    Default columns: the categorical and boolean covariates, dropped from the last one until there are at
    most ``max_strata`` non-empty strata (default n / 50 / K, so cells hold ~50 visitors per arm).
    """
    cov = data.covariates
    cache: dict = {}
    if strata is None:
        cols = [c for c in cov.columns if is_categorical(cov[c]) or cov[c].dtype == bool]
        limit = max_strata or max(1, data.n // (50 * data.n_arms))
        while cols and _codes(cov, cols, cache)[1] > limit:
            cols = cols[:-1]
    else:
        cols = list(strata)
        missing = [c for c in cols if c not in cov.columns]
        if missing:
            raise ValueError(f"strata={missing} are not covariates; covariates are {list(cov.columns)}.")
    if not cols:
        return np.zeros(data.n, dtype=np.int64), []
    return _codes(cov, cols, cache)[0], cols


def _column_codes(column: pd.Series) -> tuple[np.ndarray, int]:
    """(n,) codes of a column's values in sorted order, missing = the last code, and the number of codes."""
    try:
        codes, levels = pd.factorize(column, sort=True, use_na_sentinel=True)
    except TypeError:  # values of mixed types do not sort: first-seen order
        codes, levels = pd.factorize(column, sort=False, use_na_sentinel=True)
    codes = codes.astype(np.int32 if len(levels) < 2**31 - 1 else np.int64)
    codes[codes < 0] = len(levels)  # missing: its own stratum, after the levels
    return codes, len(levels) + 1


def _codes(cov: pd.DataFrame, cols: list, cache: dict) -> tuple[np.ndarray, int]:
    """(n,) dense stratum index, in sorted order of the columns' values (missing last), and the count.

    Per column ``pd.factorize`` once (``cache``; no object copies of the columns), then the combined
    code made dense with a bincount over the code space (O(n), no sort) when that space is small."""
    combined = np.zeros(len(cov), dtype=np.int64)
    space = 1
    for c in cols:
        if c not in cache:
            cache[c] = _column_codes(cov[c])
        codes, size = cache[c]
        combined = combined * size + codes
        space *= size
    if space <= max(1 << 22, len(cov)):
        present = np.bincount(combined, minlength=space) > 0
        dense = (np.cumsum(present) - 1)[combined]
        return dense, int(present.sum())
    unique, dense = np.unique(combined, return_inverse=True)
    return dense.astype(np.int64).reshape(-1), len(unique)


def _stats(g: np.ndarray, a: np.ndarray, v: np.ndarray, n_g: int, k: int):
    """Per (stratum, arm): count, sum, sum of squares, each (G, K)."""
    idx = g * k + a
    cnt = np.bincount(idx, minlength=n_g * k).reshape(n_g, k).astype(float)
    s1 = np.bincount(idx, weights=v, minlength=n_g * k).reshape(n_g, k)
    s2 = np.bincount(idx, weights=v * v, minlength=n_g * k).reshape(n_g, k)
    return cnt, s1, s2


def _nig_draws(cnt, s1, s2, prior_mean, prior_var, strength, rng, s):
    """Draws (S, G, K) of the mean and variance under a Normal-Inverse-Gamma posterior."""
    k0, a0 = strength, max(strength / 2.0, 1.0)
    b0 = a0 * prior_var
    safe = np.maximum(cnt, 1)
    ybar = np.where(cnt > 0, s1 / safe, 0.0)
    ss = np.maximum(s2 - cnt * ybar**2, 0.0)
    kn = k0 + cnt
    mn = (k0 * prior_mean + cnt * ybar) / kn
    an = a0 + cnt / 2.0
    bn = b0 + 0.5 * ss + k0 * cnt * (ybar - prior_mean) ** 2 / (2.0 * kn)
    sigma2 = bn / rng.gamma(an, 1.0, size=(s, *an.shape))
    mean = mn + np.sqrt(sigma2 / kn) * rng.standard_normal((s, *mn.shape))
    return mean, sigma2


def _beta_draws(cnt, hits, prior_rate, strength, rng, s):
    a = prior_rate * strength + hits
    b = (1 - prior_rate) * strength + cnt - hits
    return rng.beta(a, b, size=(s, *a.shape))


def fit_stratified(data: ExperimentData, outcome: str, draws: int, seed: int, strata=None, max_strata=None,
                   prior_strength: float = 10.0) -> dict:
    rng = np.random.default_rng(seed)
    g, cols = strata_of(data, strata, max_strata)
    n_g, k = int(g.max()) + 1, data.n_arms
    a, y = data.arm_index, data.outcome
    # average effects are the strata's count-weighted means (no one-step residuals: see Posterior.average_effects)
    info = {"engine": "stratified", "strata": cols, "n_strata": n_g, "prior_strength": prior_strength,
            "average_effect": "plug-in"}
    pooled = lambda f: np.array([f(y[a == j]) for j in range(k)])[None, :]  # noqa: E731
    if outcome == "continuous":
        cnt, s1, s2 = _stats(g, a, y, n_g, k)
        mean, _ = _nig_draws(cnt, s1, s2, pooled(np.mean), pooled(np.var) + 1e-12, prior_strength, rng, draws)
        per = mean  # (S, G, K)
        return _expand(per, g, info)
    conv = (y > 0).astype(float)
    cnt, hits, _ = _stats(g, a, conv, n_g, k)
    rate = np.clip(pooled(lambda v: (v > 0).mean()), 1e-4, 1 - 1e-4)
    p = _beta_draws(cnt, hits, rate, prior_strength, rng, draws)
    if outcome == "binary":
        return _expand(p, g, info)
    pos = y > 0
    log_y = np.where(pos, np.log(np.where(pos, y, 1.0)), 0.0)
    ccnt, cs1, cs2 = _stats(g[pos], a[pos], log_y[pos], n_g, k)
    lm = np.array([log_y[pos & (a == j)].mean() if np.any(pos & (a == j)) else 0.0 for j in range(k)])[None, :]
    lv = np.array([log_y[pos & (a == j)].var() if np.sum(pos & (a == j)) > 1 else 1.0 for j in range(k)])[None, :]
    m, s2 = _nig_draws(ccnt, cs1, cs2, lm, lv + 1e-12, prior_strength, rng, draws)
    value = np.exp(m + s2 / 2.0)
    out = _expand(p * value, g, info)
    out["components"] = {"conversion": _expand(p, g, info)["contrasts"], "severity": _expand(value, g, info)["contrasts"]}
    return out


def _expand(per: np.ndarray, g: np.ndarray, info: dict) -> dict:
    """(S, G, K) per-stratum arm means -> grouped contrasts (G, S, K-1) with ``rows`` = g (n,), and
    control-mean draws (S,). Nothing per visitor is drawn or copied."""
    contrast = (per[:, :, 1:] - per[:, :, :1]).astype(np.float32)  # (S, G, K-1)
    control = per[:, :, 0]  # (S, G)
    weights = np.bincount(g, minlength=per.shape[1]) / g.size
    return dict(contrasts=np.ascontiguousarray(contrast.transpose(1, 0, 2)), rows=g, baseline=control @ weights,
                info=info)
