import numpy as np
import pandas as pd
import pytest

from sortition.data import ExperimentData
from sortition.posterior import Posterior


def make_posterior(draws: np.ndarray, covariates: pd.DataFrame, seed: int = 0) -> Posterior:
    """A posterior from raw draws (n, S, K-1) over visitors with the given covariates."""
    n, _, k1 = draws.shape
    rng = np.random.default_rng(seed)
    arms = ["control"] + [f"t{j}" for j in range(1, k1 + 1)]
    frame = covariates.copy()
    frame["arm"] = np.array(arms)[np.arange(n) % len(arms)]
    frame["y"] = rng.normal(size=n)
    data = ExperimentData.from_frame(frame, arms=arms, covariates=list(covariates.columns))
    return Posterior.from_draws(draws, data=data)


@pytest.fixture
def two_segment_posterior():
    rng = np.random.default_rng(7)
    n, s = 600, 80
    x = pd.DataFrame({"x": rng.uniform(0, 10, n), "device": rng.choice(["mobile", "desktop"], n)})
    mean = np.stack([np.where(x["x"] > 5, 0.3, -0.2), np.where(x["device"] == "mobile", 0.25, -0.1)], axis=1)
    draws = mean[:, None, :] + rng.normal(0, 1.0, size=(n, s, 2))
    return make_posterior(draws, x), draws
