"""Propensity matrices for the BCF engine: recorded when the data has them, estimated only when absent."""

from __future__ import annotations

import numpy as np

from sortition.data import ExperimentData
from sortition.posterior.quiet import quiet_stochtree

CLIP = (0.01, 0.99)


def propensity_matrix(data: ExperimentData, x: np.ndarray, seed: int, num_threads: int) -> tuple[np.ndarray, str]:
    """(n, K-1) probability of each treatment arm per visitor, and where it came from.

    Recorded propensities give the received arm's probability exactly. With 2 arms that fixes the whole
    row (P(treated) = p or 1 - p). With K > 2 only the received arm's entry is recorded, so P(arm k) is a
    small BART regression of the recorded probabilities of arm k on the covariates (and round and cell,
    when numeric), fitted on arm k's rows and predicted at every row, arm k's own rows included
    (assignment rules are functions of covariates, round and cell, which trees recover). Without recorded
    propensities, P(arm k | x) is estimated by a small BART on the arm indicator.

    Every column is one function of the row's covariates, round and cell, never of the arm it received:
    the prognostic forest takes these columns as covariates, and a column that was exact on arm k's rows
    and interpolated elsewhere told the forest which rows got arm k (a depth-6 tree read the arm off the
    two columns for 99% of the rows of a 3-arm loop, against 76% from covariates and round), so mu(x)
    absorbed treatment differences that belong to tau(x). Recorded probabilities that are constant
    (a fixed design) are used as they are: the constant is the same for every row.
    """
    k, a = data.n_arms, data.arm_index
    p = data.propensity
    if p is not None and k == 2:
        return np.where(a == 1, p, 1.0 - p)[:, None], "recorded"
    x = _with_design_columns(data, x)
    out = np.empty((data.n, k - 1))
    for j in range(1, k):
        rows = a == j
        if p is not None:
            target = p[rows]
            # one function of (covariates, round, cell) for every row: never the exact value on arm j's
            # rows only (see above)
            out[:, j - 1] = _small_bart(x[rows], target, x, seed + j, num_threads)
        else:
            out[:, j - 1] = _small_bart(x, rows.astype(float), x, seed + j, num_threads)
    source = "recorded" if p is not None else "estimated"
    return np.clip(out, *CLIP), source


def _with_design_columns(data: ExperimentData, x: np.ndarray) -> np.ndarray:
    extra = [c.astype(float) for c in (data.round, data.cell) if c is not None and _numeric(c)]
    return np.column_stack([x, *extra]) if extra else x


def _numeric(c: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(c).dtype, np.number)


def _small_bart(x_train, y, x_pred, seed, num_threads) -> np.ndarray:
    """Mean prediction of a 20-tree BART after 5 grow-from-root sweeps (fast, enough for a nuisance)."""
    from stochtree import BARTModel

    if x_train.shape[0] < 10 or np.ptp(y) < 1e-12:
        return np.full(x_pred.shape[0], float(np.mean(y)))
    m = BARTModel()
    with quiet_stochtree():
        m.sample(X_train=x_train, y_train=y, X_test=x_pred, num_gfr=5, num_burnin=0, num_mcmc=0,
                 general_params={"random_seed": int(seed), "num_threads": int(num_threads), "keep_gfr": True},
                 mean_forest_params={"num_trees": 20})
    return np.asarray(m.y_hat_test).reshape(x_pred.shape[0], -1).mean(axis=1)
