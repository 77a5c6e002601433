"""``python -m sortition ...``: the same CLI as the ``sortition`` script."""

from sortition.cli import app

app()
