"""Filters for stochtree warnings that do not apply to Sortition's design matrix."""

from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def quiet_stochtree():
    """Silence stochtree's advice that does not apply to our design: its leaf-scale notes, and the GFR
    notes on few unique values, which every one-hot / missing-indicator column of the design matrix
    (``ExperimentData.design_matrix``) triggers by construction."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*leaf scale.*")
        warnings.filterwarnings("ignore", message=".*fixed at 1.*")
        warnings.filterwarnings("ignore", message=".*grow-from-root.*")
        yield
