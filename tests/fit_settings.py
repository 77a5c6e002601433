"""Small BCF settings shared by the offline tests: about a second per fit on 2 cores.

A module of its own (not ``conftest``), so a test imports it the same way whatever other test folders
pytest collects first (several folders have a ``conftest`` of their own)."""

FAST = dict(num_trees_mu=50, num_trees_tau=50, num_gfr=10, draws=50, num_threads=1, progress=False)
