import warnings

import pytest

# Small forests and few draws keep every BCF fit in this suite well under a second on 2 cores.
FAST = dict(num_trees_mu=40, num_trees_tau=20, num_gfr=5, draws=50, num_threads=2, progress=False)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
