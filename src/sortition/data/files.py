"""Reading a user's data file: CSV (also ``.csv.gz``/``.bz2``/``.zst``/``.xz``), TSV, Parquet, DuckDB.

Every format gets the same handling: text columns whose every value is an ISO date or timestamp
become timestamps (so a timestamp column is dropped as a covariate with a warning that names it,
whatever the format), errors say what is wrong in the user's terms (no parser internals), and the
frame carries a :class:`~sortition.data.validation.RowLabels` so that later errors name file lines
(CSV, the header is line 1) or 1-based rows (Parquet, DuckDB).
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import lzma
import re
from pathlib import Path
from typing import Any

import pandas as pd

from sortition.names import did_you_mean, listing
from sortition.data.validation import ROW_LABELS, RowLabels
from sortition.userfiles import first_non_utf8, not_text_message

_COMPRESSED = (".gz", ".bz2", ".zst", ".xz", ".zip")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}  # to find a bad byte's line inside
_TEXT = {".csv": ",", ".tsv": "\t", ".txt": ","}
_PARQUET = (".parquet", ".pq")
_DUCKDB = (".duckdb", ".db", ".ddb")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$")


def file_kind(path: str | Path) -> str:
    """``"csv"``, ``"parquet"`` or ``"duckdb"`` by the file's name; ValueError for anything else."""
    name = Path(path).name.lower()
    suffixes = Path(name).suffixes
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in _TEXT:
        return "csv"
    if last in _PARQUET and not name.endswith(_COMPRESSED):
        return "parquet"
    if last in _DUCKDB and not name.endswith(_COMPRESSED):
        return "duckdb"
    raise ValueError(
        f"cannot read {str(path)!r}: use a .csv (or .csv.gz), .tsv, .parquet or .duckdb file"
    )


def require_file(path: str | Path, what: str = "data file") -> Path:
    """``path`` as a Path; ValueError naming the nearest file in its folder when it does not exist."""
    path = Path(path)
    if path.is_file():
        return path
    if path.exists():
        raise ValueError(f"{what} {str(path)!r} is a folder, not a file")
    folder = path.parent if str(path.parent) else Path(".")
    siblings = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    hint = did_you_mean(path.name, siblings)
    raise ValueError(f"{what} {str(path)!r} does not exist{hint}")


def require_output_file(path: str | Path, what: str, example: str = "out.json") -> Path:
    """``path`` as a Path to write a file to; ValueError, before any work, when it is a folder or
    its folder does not exist (found only at the end, it would waste a whole run)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; give a file name, such as "
                         f"{str(path / example)!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"cannot write {what} {str(path)!r}: the folder {str(folder)!r} does not exist; "
                         "create it first")
    return path


def require_output_folder(path: str | Path, what: str) -> Path:
    """``path`` as a Path to a folder to write into (created later, by the writer); ValueError,
    before any work, when it or a folder above it is a file (``mkdir`` would fail only at the end)."""
    path = Path(path)
    for here in (path, *path.parents):
        if here.exists():
            if not here.is_dir():
                where = "is" if here == path else f"is inside {str(here)!r}, which is"
                instead = here.with_name(here.name + "-out") / path.relative_to(here)
                raise ValueError(f"{what} {str(path)!r} {where} a file, not a folder; give a folder, "
                                 f"such as {str(instead)!r}")
            break
    return path


def read_table(path: str | Path, *, query: str | None = None, table: str | None = None) -> pd.DataFrame:
    """A user's data as a DataFrame: CSV, Parquet, or a DuckDB database (``query`` or ``table``).

    ISO date/timestamp text columns are parsed as timestamps (UTC), in every format.
    Raises ValueError with what to fix (missing file, unknown format, --table on a CSV, bad rows).
    """
    path = require_file(path)
    kind = file_kind(path)
    if kind != "duckdb" and (query is not None or table is not None):
        option = "--query" if query is not None else "--table"
        raise ValueError(f"{option} reads a DuckDB database, but {path.name} is a {kind.upper()} file; "
                         f"drop {option} (the whole file is read)")
    if kind == "csv":
        frame = _read_csv(path)
        labels = RowLabels("lines", 2, path.name)
    elif kind == "parquet":
        frame = _read_parquet(path)
        labels = RowLabels("rows", 1, path.name)
    else:
        frame = _read_duckdb(path, query, table)
        labels = RowLabels("rows", 1, path.name)
    frame = parse_timestamps(frame)
    frame.attrs[ROW_LABELS] = labels
    return frame


def parse_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every non-missing value is an ISO date/timestamp, and object columns of
    dates (Parquet's ``date32`` arrives as ``datetime.date`` objects), as UTC timestamps."""
    out = frame
    for col in frame.columns:
        s = frame[col]
        if not (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
            continue
        values = s.dropna()
        if values.empty:
            continue
        if all(isinstance(v, (dt.date, dt.datetime)) for v in values.head(1000)):
            out = out.copy() if out is frame else out
            out[col] = pd.to_datetime(s, utc=True, errors="coerce")
            continue
        if not all(isinstance(v, str) and _ISO.match(v) for v in values.head(1000)):
            continue
        if not values.astype(str).str.match(_ISO).all():
            continue
        parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        if parsed.notna().sum() == len(values):
            out = out.copy() if out is frame else out
            out[col] = parsed
    return out


def _read_csv(path: Path) -> pd.DataFrame:
    suffixes = [s.lower() for s in path.suffixes]
    sep = "\t" if ".tsv" in suffixes else ","
    try:
        frame = pd.read_csv(path, sep=sep)
        _refuse_repeated_names(path, sep)
        return frame
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path.name} is empty (no header line)") from None
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if found:
            want, line, saw = found.groups()
            raise ValueError(f"line {line} of {path.name} has {saw} fields, but the header has {want}; fix that "
                             "line (a separator inside an unquoted value?)") from None
        raise ValueError(f"{path.name} is not a readable CSV file") from None
    except UnicodeDecodeError:
        packed = [s for s in suffixes if s in _COMPRESSED]
        opener = _OPENERS.get(packed[-1]) if packed else open
        where = None
        if opener is not None:
            with opener(path, "rb") as stream:
                where = first_non_utf8(stream)  # pandas' own offset counts from its buffer, not the file
        if where is None:  # a .zip or .zst, or the file changed under us: say so without a place
            raise ValueError(f"{path.name} is not UTF-8 text; save it as UTF-8 CSV") from None
        raise ValueError(not_text_message(path.name, "data file", *where,
                                          fix="save it as UTF-8 CSV")) from None
    except (OSError, EOFError) as err:  # a truncated or mis-named compressed file
        raise ValueError(f"cannot read {path.name}: {getattr(err, 'strerror', None) or err}") from None


def _refuse_repeated_names(path: Path, sep: str) -> None:
    """pandas renames a repeated header ('age', 'age.1'), which would silently fit a column twice or
    under a name the user never wrote: refuse it, naming the repeats."""
    first = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str).iloc[0]
    header = [name for name in first if isinstance(name, str)]  # blank names: pandas's 'Unnamed: i'
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        positions = {name: [i + 1 for i, h in enumerate(first) if h == name] for name in repeated}
        shown = "; ".join(f"{name!r} is columns {positions[name]}" for name in repeated)
        raise ValueError(
            f"the header of {path.name} repeats column names: {shown}; rename or drop the repeats"
        )


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path.name} is not a readable Parquet file ({type(err).__name__})") from None


def _read_duckdb(path: Path, query: str | None, table: str | None) -> pd.DataFrame:
    import duckdb

    from sortition.data.locks import open_error

    if query is not None and table is not None:
        raise ValueError("give --query or --table, not both")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as err:
        raise open_error(err, str(path)) from None
    with con:
        sql = duckdb_select(con, path, query, table)
        try:
            return con.execute(sql).df()
        except duckdb.Error as err:
            raise ValueError(f"the query on {path.name} failed: {duckdb_message(err)}") from None


def duckdb_select(con: Any, path: Path, query: str | None, table: str | None) -> str:
    """The SQL that reads a user's rows from an open DuckDB database: ``query`` as given, else all of
    ``table`` (refused, with the nearest, when the database lacks it), else the database's only table."""
    if query is not None:
        return query
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]
    if table is None:
        if {"assignments", "outcomes"} <= set(tables):
            raise ValueError(f"{path.name} is a Sortition event store; name the experiment with --flag KEY "
                             "(and its outcome with --metric)")
        if len(tables) != 1:
            raise ValueError(f"{path.name} holds tables {listing(tables)}; name one with --table or give "
                             "a --query")
        table = tables[0]
    if table not in tables:
        raise ValueError(f"{path.name} has no table {table!r}{did_you_mean(table, tables)}; its tables are "
                         f"{listing(tables) or 'none'}")
    return 'SELECT * FROM "{}"'.format(table.replace('"', '""'))


def duckdb_message(err: Exception) -> str:
    """DuckDB's error, first line only (its later lines are hints about catalog internals)."""
    return str(err).strip().splitlines()[0]
