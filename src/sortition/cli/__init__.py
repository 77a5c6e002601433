"""The ``sortition`` command line. Each sub-command lives in its own module."""

from sortition.cli.app import app
import sortition.cli.conformance  # noqa: F401,E402  (registers `sortition conformance`)
import sortition.cli.bandit  # noqa: F401,E402  (registers `sortition bandit`)
import sortition.cli.demo  # noqa: F401,E402  (registers `sortition demo` and `sortition analyze`)
import sortition.cli.round  # noqa: F401,E402  (registers `sortition round`)
import sortition.cli.server  # noqa: F401,E402  (registers `serve`, `publish`, `versions`, `rollback`, `keys`)
import sortition.cli.score  # noqa: F401,E402  (registers `sortition score`)

__all__ = ["app"]
