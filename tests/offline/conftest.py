import warnings

import pytest

# Small forests and few draws keep every BCF fit in this suite about a second on 2 cores.
FAST = dict(num_trees_mu=50, num_trees_tau=50, num_gfr=10, draws=50, num_threads=1, progress=False)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
