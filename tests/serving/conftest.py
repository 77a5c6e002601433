import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_serving_logs(caplog):
    caplog.set_level(logging.CRITICAL, logger="sortition.serving")
