"""The ``sortition`` command line. Each sub-command lives in its own module."""

from sortition.cli.app import app
import sortition.cli.conformance  # noqa: F401,E402  (registers `sortition conformance`)

__all__ = ["app"]
