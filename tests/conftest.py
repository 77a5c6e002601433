"""Suite-wide setup: ``tests/`` on sys.path, so shared helpers (``cli_helpers``) import the same way
whichever test module pytest collects first (some test folders are packages, some are not)."""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
