"""The BCF revenue posterior on loop-collected data: average-effect intervals cover the truth over seeds.

The loop (stratified engine, for speed) allocates by round, segment and cell and moves traffic off the
control arm; the BCF posterior is fitted on its rows afterwards, as ``sortition`` does in a round.
"""

import warnings

import numpy as np

from sortition.experiment import SequentialExperiment
from sortition.experiment.steps import experiment_data
from sortition.posterior import fit
from sortition.scenarios import make_scenario

from .conftest import draw_round

FAST = dict(num_trees_mu=50, num_trees_tau=50, num_gfr=10, draws=50, num_threads=1, progress=False)


def _loop_rows(seed: int, rounds: int, visitors: int):
    """A storefront loop's rows (revenue, 3 arms) and the truth of its visitors."""
    scenario = make_scenario("storefront")
    loop = SequentialExperiment(scenario.arms, key="bias", outcome="revenue", engine="stratified",
                                fit_options={"progress": False}, seed=seed)
    rng = np.random.default_rng([seed, 11])
    for r in range(rounds):
        rows, _ = draw_round(loop.plan_, scenario, visitors, rng, r)
        loop.advance(rows)
    data = experiment_data(loop.data_, scenario.arms, None)
    return data, scenario.truth(data.covariates)


def test_loop_collected_revenue_average_effect_covers_the_truth_over_seeds():
    z, covered, control = [], {0.8: [], 0.9: []}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for seed in range(6):
            data, truth = _loop_rows(seed, rounds=4, visitors=750)
            control.append(float((data.arm_index == 0).mean()))
            draws = fit(data, outcome="revenue", seed=seed, **FAST).mean_contrasts()  # (S, K-1)
            z += list((draws.mean(axis=0) - truth.ate) / draws.std(axis=0))
            for level in covered:
                lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
                covered[level] += list((lo <= truth.ate) & (truth.ate <= hi))
    z = np.asarray(z)
    print("control share", np.round(control, 3), "z", np.round(z, 2),
          {level: np.mean(hits) for level, hits in covered.items()})
    assert np.median(control) < 0.3  # adaptive: the loop moved traffic off control
    assert abs(z.mean()) < 0.8 and np.sqrt((z**2).mean()) < 1.6, z
    assert np.mean(covered[0.8]) >= 0.6 and np.mean(covered[0.9]) >= 0.75, covered
