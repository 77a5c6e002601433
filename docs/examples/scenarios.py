"""Scenarios of your own for `sortition calibrate --scenario-file docs/examples/scenarios.py`.

Written in the form of sortition.scenarios.library: each lift function takes the visitors (raw columns
device, channel, country, returning, recency, noise_1..noise_3) and K, and returns the (n, K-1) lift of
each treatment over control; LIFTS names them. Sortition turns lifts into outcomes for every kind
(continuous, binary, revenue) and keeps the truth apart from the observed data.
"""

import numpy as np


def loyalty(v, k):
    """Returning visitors gain, the more recently they came back (+0.9 fresh, none after 60 days); new
    visitors lose a little (-0.2). Arm j > 1 is half as strong as arm 1."""
    recency = np.nan_to_num(v["recency"].to_numpy(dtype=float), nan=30.0)
    returning = v["returning"].to_numpy(dtype=float)
    lift = returning * 0.9 * np.clip(1 - recency / 60.0, 0, 1) - 0.2 * (1 - returning)
    scale = np.array([1.0] + [0.5] * (k - 2))
    return lift[:, None] * scale[None, :]


LIFTS = {"loyalty": loyalty}
