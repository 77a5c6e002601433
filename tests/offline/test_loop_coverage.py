"""Average-effect coverage on data collected by the real loop (issue 11): SequentialExperiment served
through the Client by ``simulate``, events in an in-memory DuckDB store, propensities as recorded."""

import warnings

import numpy as np
from fit_settings import FAST

from sortition.experiment import SequentialExperiment
from sortition.experiment.schedules import fixed
from sortition.experiment.simulation import simulate
from sortition.experiment.steps import experiment_data
from sortition.posterior import fit
from sortition.scenarios import make_scenario
from sortition.store import EventStore

SEEDS = 24


def _loop_effect(seed: int) -> tuple[np.ndarray, float, float]:
    """One loop on ``gradient`` (binary, 2 arms; the treatment wins for all but the freshest visits), 4 rounds
    x 300 visitors, control floor 2%: by the last round a third of the loops serve control to 5-7% of the
    visitors, the others keep it where it wins. The stratified engine allocates (for speed, as
    benchmarks/adaptive_bias.py), then a BCF fit with the FAST settings scores every row.
    Returns the (S,) average-effect draws, the truth (the mean true effect of these same visitors) and
    the last round's control share."""
    scenario = make_scenario("gradient", 2, "binary")
    loop = SequentialExperiment(scenario.arms, key="loopcov", outcome="binary", engine="stratified",
                                fit_options={"progress": False}, schedule=fixed(4, 300), seed=seed,
                                min_control_weight=0.02, tree_options={"n_bootstrap": 0})
    with EventStore(":memory:") as store, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        simulate(scenario, loop, seed=seed, store=store, eval_visitors=500)
    data = experiment_data(loop.data_, scenario.arms, None)
    truth = scenario.truth(data.covariates).contrasts.mean(axis=0)[0]
    last = np.asarray(data.round) == np.max(data.round)
    posterior = fit(data, outcome="binary", seed=seed, **FAST)
    return posterior.average_effects()[:, 0], float(truth), float((data.arm_index[last] == 0).mean())


def test_average_effect_covers_on_loop_collected_data_with_little_control():
    """Over 24 seeded loops, the one-step average effect's 90% interval covers the truth near nominal
    and its z-scores have RMS near 1.

    Measured (FAST settings, these seeds): one-step 90% / 80% coverage 92% / 67%, mean z -0.09,
    RMS z 1.03. With ``average_effects`` temporarily returning the plug-in (``mean_contrasts``) on the
    same fits: 79% / 67%, mean z -0.04, RMS z 1.28, which fails the 90% coverage and RMS z checks.
    The plug-in's failure here is its width and spread (RMS z), not a shared sign of its errors; the
    80% check (at 24 effects one binomial SE is 8 points) is a guard only, both estimates pass it.
    Margins: 2 of 24 hits at 90% and 0.17 in RMS z; a change to the fits' draws moves them, so re-measure
    both estimates then. About 38 s of CPU (one thread), most of it the 24 BCF fits.
    """
    z, covered, control = [], {0.8: [], 0.9: []}, []
    for seed in range(SEEDS):
        draws, truth, control_last = _loop_effect(seed)
        control.append(control_last)
        z.append((draws.mean() - truth) / draws.std())
        for level in covered:
            lower, upper = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
            covered[level].append(lower <= truth <= upper)
    z = np.asarray(z)
    cover = {level: float(np.mean(hits)) for level, hits in covered.items()}
    print("z", np.round(z, 2), cover, "control share, last round", np.round(control, 2))
    # little control traffic by the late rounds: a third of the loops end at the floor (<= 7% control)
    assert np.sum(np.asarray(control) <= 0.07) >= SEEDS // 3, control
    # one binomial SE of 90% coverage at 24 effects is 6 points: the band is about 1 SE below nominal
    assert cover[0.9] >= 0.83 and cover[0.8] >= 0.62, cover
    assert abs(z.mean()) < 0.45, z  # the SE of mean z is about 0.2
    assert np.sqrt(np.mean(z**2)) < 1.2, z
