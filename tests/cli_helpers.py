"""Run the CLI the way a user would, independent of the terminal's width.

Every test of the CLI goes through :func:`invoke`: it fixes ``COLUMNS`` (so tables render the same on
every machine) and gives ``.text``, the output with runs of white space folded to one space, so an
assertion never depends on where a line happened to break.
"""

from __future__ import annotations

from dataclasses import dataclass

from typer.testing import CliRunner

from sortition.cli import app


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    output: str
    exception: BaseException | None

    @property
    def text(self) -> str:
        """The output with white space folded, for assertions on messages."""
        return " ".join(self.output.split())


def write_table(frame, path) -> None:
    """Write ``frame`` as a user would hand it over, by the file's suffix: CSV (also .csv.gz),
    Parquet, or a DuckDB database with one table ``visits``."""
    name = str(path)
    if ".csv" in name:
        frame.to_csv(path, index=False)
    elif name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        import duckdb

        with duckdb.connect(name) as con:
            con.register("f", frame)
            con.execute("CREATE TABLE visits AS SELECT * FROM f")


def invoke(args: list[str], *, columns: int = 100, **kwargs) -> CliResult:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)}, **kwargs)
    return CliResult(result.exit_code, result.output, result.exception)
