"""The ``sortition`` command line. Each sub-command lives in its own module."""

from sortition.cli.app import app

__all__ = ["app"]
