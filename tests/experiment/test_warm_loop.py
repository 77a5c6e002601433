"""The loop warm-starts each round's BCF fit from the last one, also across a save and reload."""

import warnings

import numpy as np

from sortition.experiment import SequentialExperiment
from sortition.scenarios import make_scenario

from .conftest import draw_round

FIT = {"progress": False, "num_threads": 1, "num_trees_mu": 30, "num_trees_tau": 20, "num_gfr": 5, "draws": 30}


def _experiment(**kw):
    scenario = make_scenario("two_segments", 2, "binary")
    return scenario, SequentialExperiment(scenario.arms, key="warm", outcome="binary", engine="bcf",
                                          fit_options=FIT, tree_options={"n_bootstrap": 0}, seed=2, **kw)


def test_rounds_after_the_first_start_from_the_last_fit_and_reload_keeps_it(tmp_path):
    warnings.simplefilter("ignore", UserWarning)
    scenario, exp = _experiment()
    rng = np.random.default_rng(0)
    exp.advance(draw_round(exp.plan_, scenario, 400, rng, 0)[0])
    assert exp.posterior_.info["warm_start"] == "cold (no previous fit)"
    loaded = SequentialExperiment.load(exp.save(tmp_path / "state.json"))
    assert loaded.warm_start and loaded._state.warm_start == exp._state.warm_start
    rows = draw_round(exp.plan_, scenario, 400, rng, 1)[0]
    a, b = exp.advance(rows), loaded.advance(rows)
    assert exp.posterior_.info["warm_start"] == loaded.posterior_.info["warm_start"] == "warm"
    assert np.array_equal(exp.posterior_.contrast_draws(), loaded.posterior_.contrast_draws())
    assert a.lifts == b.lifts and a.plan == b.plan

    _, cold = _experiment(warm_start=False)
    cold.advance(draw_round(cold.plan_, scenario, 400, np.random.default_rng(0), 0)[0])
    cold.advance(rows)
    assert cold.posterior_.info["warm_start"] == "cold (no previous fit)"
    assert cold.settings()["warm_start"] is False
