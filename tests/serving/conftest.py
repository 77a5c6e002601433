import json
import logging
from pathlib import Path

import pytest

UFC = Path(__file__).resolve().parents[1] / "conformance" / "eppo" / "ufc"


@pytest.fixture(autouse=True)
def _quiet_serving_logs(caplog):
    caplog.set_level(logging.CRITICAL, logger="sortition.serving")


def read(name: str) -> str:
    return (UFC / name).read_text()


def cases(folder: str) -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text())) for p in sorted((UFC / folder).glob("*.json"))]
