"""Eppo's cross-SDK test vectors (tests/conformance/eppo/ufc) for the serving tests.

A module of its own (not ``conftest``), so a test imports it the same way whatever other test folders
pytest collects first."""

import json
from pathlib import Path

UFC = Path(__file__).resolve().parent / "conformance" / "eppo" / "ufc"


def read(name: str) -> str:
    """The text of one file under the vectors' folder (e.g. ``"flags-v1.json"``)."""
    return (UFC / name).read_text()


def cases(folder: str) -> list[tuple[str, dict]]:
    """(file name, parsed JSON) of every case in one of the vectors' folders, sorted by name."""
    return [(p.name, json.loads(p.read_text())) for p in sorted((UFC / folder).glob("*.json"))]
