"""Realistic visitor attributes for synthetic experiments (raw values, as a site would log them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

DEVICES = (("mobile", 0.55), ("desktop", 0.35), ("tablet", 0.10))
CHANNELS = (("search", 0.35), ("social", 0.25), ("email", 0.15), ("direct", 0.25))
COUNTRIES = (("US", 0.40), ("GB", 0.15), ("DE", 0.15), ("FR", 0.10), ("IN", 0.20))


def _pick(rng: np.random.Generator, table, n: int) -> np.ndarray:
    names, probs = zip(*table)
    return np.asarray(names, dtype=object)[rng.choice(len(names), size=n, p=probs)]


def sample_visitors(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n visitors: device, channel, country (categorical), returning (bool, 40%), recency (days since the
    last visit, about 3% missing), and nuisance columns noise_1, noise_2 (numeric) and noise_3 (categorical)
    that carry no signal."""
    returning = rng.random(n) < 0.4
    recency = np.where(returning, rng.exponential(10.0, n), rng.exponential(30.0, n)).round(1)
    recency[rng.random(n) < 0.03] = np.nan
    return pd.DataFrame({
        "device": _pick(rng, DEVICES, n),
        "channel": _pick(rng, CHANNELS, n),
        "country": _pick(rng, COUNTRIES, n),
        "returning": returning,
        "recency": recency,
        "noise_1": rng.normal(size=n),
        "noise_2": rng.uniform(size=n),
        "noise_3": np.asarray(["A", "B", "C"], dtype=object)[rng.integers(0, 3, n)],
    })
