"""Shared synthetic environment for the learning tests."""

from __future__ import annotations

import pytest

from sortition.learning.environment import make_environment


@pytest.fixture(scope="session")
def env():
    return make_environment(n_actions=3, seed=7, noise_sd=0.3, missing_rate=0.15)
