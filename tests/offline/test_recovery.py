"""Recovery of known effects: every scenario and outcome kind, K = 2, 3 and 4 (small, seeded fits)."""

import numpy as np
import pytest
from fit_settings import FAST

from sortition.posterior import fit
from sortition.scenarios import SCENARIOS, evaluate, generate


def contrast_masks(name, cov):
    """Two groups of visitors whose true arm-1 effects differ, per scenario."""
    dev, ch = cov["device"], cov["channel"]
    rec = cov["recency"].fillna(14.0)
    return {
        "two_segments": (cov["returning"], ~cov["returning"]),
        "reversal": (dev.eq("mobile"), dev.eq("desktop")),
        "sparse": (ch.eq("email") & cov["country"].isin(["DE", "GB"]), ch.eq("search")),
        "gradient": (rec > 30, rec < 5),
        "multi_winner": (ch.eq("search"), ch.eq("direct")),
        "storefront": (dev.eq("mobile"), dev.eq("desktop")),
    }[name]


CASES = [(name, outcome, 3 if name == "storefront" else 2) for name in SCENARIOS
         for outcome in ("continuous", "binary", "revenue")]
CASES += [(name, "continuous", k) for k in (3, 4) for name in ("two_segments", "reversal", "multi_winner")]
CASES += [("multi_winner", "binary", 3), ("multi_winner", "revenue", 4), ("reversal", "binary", 4)]


@pytest.mark.parametrize("name, outcome, k", CASES)
def test_recovers_known_effects(name, outcome, k):
    n = 8_000 if name == "sparse" else 4_000
    data, truth = generate(name, n, arms=k, outcome=outcome, seed=17 + k)
    post = fit(data, outcome=outcome, seed=1, **FAST)
    ev = evaluate(post, truth)
    sd = post.mean_contrasts().std(axis=0)
    assert np.all(np.abs(ev.ate_error) < 3.5 * sd + 1e-9), (ev.ate_error, sd)  # average effects found
    if name == "homogeneous":
        # little spurious heterogeneity (revenue per visitor is far noisier at this size)
        assert ev.cate_rmse < (1.0 if outcome == "revenue" else 0.75) * np.abs(truth.ate).max()
        return
    tau = truth.contrasts
    assert ev.cate_rmse < np.sqrt((tau**2).mean())  # better than "no effect anywhere"
    a, b = (m.to_numpy() for m in contrast_masks(name, data.covariates))
    true_gap = tau[a, 0].mean() - tau[b, 0].mean()
    est_gap = post.segment_mean_contrasts(a)[:, 0].mean() - post.segment_mean_contrasts(b)[:, 0].mean()
    # heterogeneity found with the right sign and size (forests shrink weak smooth or rare effects more)
    low = 0.2 if name in ("gradient", "sparse") else 0.3
    assert low < est_gap / true_gap < 1.7, (est_gap, true_gap)
    # each segment's winner is found (revenue's log-normal noise needs far more than 4,000 visitors)
    if name in ("multi_winner", "storefront") and outcome != "revenue":
        for mask in (a, b):
            est = np.concatenate([[0.0], post.segment_mean_contrasts(mask).mean(axis=0)])
            true = np.concatenate([[0.0], tau[mask].mean(axis=0)])
            assert est.argmax() == true.argmax(), (est, true)
