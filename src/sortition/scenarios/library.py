"""The scenario library: how each arm's effect depends on the visitor, for every outcome kind.

Effects are written once per scenario as a dimensionless "lift" per treatment arm (n, K-1), then mapped
to the metric: continuous ``tau = 1.0 * lift`` (noise sd 2); binary ``p_k = p_0 + 0.10 * lift``; revenue
converts with ``p_k`` and spends a log-normal order value whose log-mean moves by ``0.15 * severity_lift``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _recency(v: pd.DataFrame) -> np.ndarray:
    r = v["recency"].to_numpy(dtype=float)
    return np.where(np.isnan(r), 14.0, r)


def _arms_scale(k: int, first: float = 1.0, rest: float = 0.5) -> np.ndarray:
    return np.array([first] + [rest] * (k - 2))


def homogeneous(v, k):
    """Every visitor gains the same; later arms gain more (arm j: 0.5 * j / (K-1))."""
    return np.tile(0.5 * np.arange(1, k) / (k - 1), (len(v), 1))


def two_segments(v, k):
    """40% responders (returning visitors) gain +1 from arm 1 (conversion 0.08 -> 0.18); others nothing."""
    resp = v["returning"].to_numpy(dtype=float)
    return resp[:, None] * _arms_scale(k)[None, :]


def reversal(v, k):
    """Arm 1 helps mobile (+0.8) and hurts desktop (-0.8); other arms do the opposite at half strength."""
    sign = (v["device"].eq("mobile").to_numpy(dtype=float) - v["device"].eq("desktop").to_numpy(dtype=float))
    return 0.8 * sign[:, None] * _arms_scale(k, 1.0, -0.5)[None, :]


def sparse(v, k):
    """Only email visitors from DE/GB (~4.5%) benefit, strongly (+1.5), and only from arm 1."""
    hit = (v["channel"].eq("email") & v["country"].isin(["DE", "GB"])).to_numpy(dtype=float)
    return hit[:, None] * _arms_scale(k, 1.5, 0.0)[None, :]


def gradient(v, k):
    """The effect grows with recency: -0.2 for fresh visits up to +1.0 at 40+ days."""
    r = np.clip(_recency(v) / 40.0, 0, 1)
    return (1.2 * r - 0.2)[:, None] * _arms_scale(k)[None, :]


def multi_winner(v, k):
    """Each channel has its own winner: search -> arm 1, social -> arm 2, email -> arm 3, direct -> control.
    The winning arm gains +0.8, every other treatment loses -0.3."""
    winner = v["channel"].map({"search": 1, "social": 2, "email": 3, "direct": 0}).to_numpy()
    arms = np.arange(1, k)[None, :]
    return np.where(winner[:, None] == arms, 0.8, -0.3)


def storefront_lift(v, k):
    """Free shipping (arm 1) lifts mobile conversion; the bundle (arm 2) lowers it slightly."""
    mobile = v["device"].eq("mobile").to_numpy(dtype=float)
    return np.column_stack([0.7 * mobile - 0.2 * (1 - mobile), np.full(len(v), -0.1)])


def storefront_severity(v, k):
    """Free shipping shrinks baskets a little; the bundle grows desktop and returning baskets, not mobile."""
    desktop = v["device"].eq("desktop").to_numpy(dtype=float)
    mobile = v["device"].eq("mobile").to_numpy(dtype=float)
    returning = v["returning"].to_numpy(dtype=float)
    return np.column_stack([np.full(len(v), -0.5), 2.5 * desktop + 0.8 * returning - 0.8 * mobile])


LIFTS = {
    "homogeneous": homogeneous,
    "two_segments": two_segments,
    "reversal": reversal,
    "sparse": sparse,
    "gradient": gradient,
    "multi_winner": multi_winner,
    "storefront": storefront_lift,
}
SEVERITY_LIFTS = {"storefront": storefront_severity}
FIXED_ARMS = {"storefront": ("control", "free_shipping", "bundle")}
DEFAULT_OUTCOME = {"storefront": "revenue"}


def baseline_continuous(v: pd.DataFrame) -> np.ndarray:
    return (10.0 + 1.5 * v["returning"].to_numpy(dtype=float) + 0.8 * v["device"].eq("desktop").to_numpy(dtype=float)
            + 0.5 * v["country"].eq("US").to_numpy(dtype=float) - 0.02 * _recency(v))


def baseline_conversion(v: pd.DataFrame) -> np.ndarray:
    return (0.08 + 0.02 * v["returning"].to_numpy(dtype=float) + 0.01 * v["device"].eq("desktop").to_numpy(dtype=float))


def baseline_log_order_value(v: pd.DataFrame) -> np.ndarray:
    return (np.log(40.0) + 0.3 * v["device"].eq("desktop").to_numpy(dtype=float)
            + 0.1 * v["returning"].to_numpy(dtype=float))


NOISE_SD = 2.0
TAU_SCALE = 1.0
CONVERSION_SCALE = 0.10
SEVERITY_SCALE = 0.15
ORDER_SIGMA = 0.6
