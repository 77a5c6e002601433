"""How well a posterior recovers the truth: CATE RMSE, interval coverage and width."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sortition.posterior import Posterior
from sortition.scenarios.truth import Truth


@dataclass(frozen=True)
class Evaluation:
    """Scores of a posterior against the truth; dict keys are credible levels (e.g. 0.8, 0.9).

    cate_rmse: RMSE of the posterior-mean contrast over visitors and contrasts (metric units).
    cate_rmse_by_arm: (K-1,) the same per treatment arm.
    coverage / width: share of visitor-contrast pairs whose interval holds the truth, and mean width.
    ate_error: (K-1,) posterior-mean average effect minus the true average effect.
    ate_covered / ate_width: per level, (K-1,) whether the average-effect interval holds the truth, its width.
    """

    cate_rmse: float
    cate_rmse_by_arm: np.ndarray
    coverage: dict
    width: dict
    ate_error: np.ndarray
    ate_covered: dict
    ate_width: dict

    def row(self) -> dict:
        out = {"cate_rmse": self.cate_rmse}
        for lv in self.coverage:
            out[f"coverage_{int(lv * 100)}"] = self.coverage[lv]
            out[f"width_{int(lv * 100)}"] = self.width[lv]
        return out


def evaluate(posterior: Posterior, truth: Truth, levels: Sequence[float] = (0.8, 0.9)) -> Evaluation:
    """Compare per-visitor and average-effect posteriors with the truth (same rows, same arms)."""
    if posterior.n != truth.n or posterior.n_arms != len(truth.arms):
        raise ValueError(f"posterior covers {posterior.n} visitors x {posterior.n_arms} arms but truth has "
                         f"{truth.n} x {len(truth.arms)}; evaluate the posterior fitted on the generated data.")
    tau = truth.contrasts
    err = posterior.cate() - tau
    ate_draws = posterior.average_effects()  # what lift_summary reports
    cov, wid, acov, awid = {}, {}, {}, {}
    for lv in levels:
        lo, hi = posterior.cate_interval(lv)
        cov[lv] = float(((lo <= tau) & (tau <= hi)).mean())
        wid[lv] = float((hi - lo).mean())
        alo, ahi = np.quantile(ate_draws, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
        acov[lv] = (alo <= truth.ate) & (truth.ate <= ahi)
        awid[lv] = ahi - alo
    return Evaluation(float(np.sqrt((err**2).mean())), np.sqrt((err**2).mean(axis=0)), cov, wid,
                      ate_draws.mean(axis=0) - truth.ate, acov, awid)
