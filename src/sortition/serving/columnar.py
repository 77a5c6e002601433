"""Columnar scoring: one flag, and the bandit behind it, over a whole table at once.

:func:`assign_table` and :func:`bandit_table` (``Client.assign_table`` / ``Client.bandit_table``)
give, row for row, what ``get_assignment`` / ``get_bandit_action`` would give each subject with
the row as its attribute dict (missing values left out: nulls, and float NaN), without a Python
object per subject:

* rule matching over columns (:mod:`sortition.serving.column_masks`, the same semantics as the
  rule walk), allocation by allocation over the subjects still unassigned;
* the shard hash vectorized across subjects (:mod:`sortition.serving.column_shards`), only for
  the subjects that reach each salt;
* bandit scores as an ``(n, k)`` matrix accumulated term by term in the scorer's order (so every
  float is the single call's, bit for bit; a BLAS product would reorder the sums), inverse-gap
  weights, the shuffle and the selection in numpy.

Events come back as Arrow tables (and go to a logger's ``log_assignments(table)`` /
``log_bandit_actions(table)`` when it has them); the dedup cache is not consulted: every row
whose allocation logs yields an event. The table is processed ``chunk_size`` rows at a time, so
working memory is bounded by the chunk, not the audience.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sortition.names import did_you_mean, listing
from sortition.serving.attributes import numeric_value
from sortition.serving.bandits import (
    BanditModel,
    _js_sorted,
    categorical_key,
    evaluate_bandit,
)
from sortition.serving.column_masks import (
    BOOL,
    FLOAT,
    INT,
    OBJECT,
    STRING,
    Column,
    column_from_arrow,
    column_from_values,
    condition_mask,
    object_column,
)
from sortition.serving.batch import choose_actions, score_matrix
from sortition.serving.column_shards import SubjectBytes
from sortition.serving.configuration import Configuration
from sortition.serving.events import META_DATA, now_rfc3339, offered_groups
from sortition.serving.model import Flag
from sortition.serving.obfuscation import b64decode, md5_hex
from sortition.serving.results import (
    ASSIGNMENT_ERROR,
    DEFAULT_ALLOCATION_NULL,
    FLAG_UNRECOGNIZED_OR_DISABLED,
    TYPE_MISMATCH,
)
from sortition.serving.sharding import BANDIT_ASSIGNMENT_SHARDS

logger = logging.getLogger("sortition.serving")

SUBJECT_KEY_MISSING = "SUBJECT_KEY_MISSING"
# rows per pass: larger passes pay less per-pass overhead (12% at 100k rows, against 16,384); the
# compiled MD5 keeps its state in cache by hashing 1,024 lanes at a time inside the pass
DEFAULT_CHUNK_SIZE = 65_536
_ARROW_TYPES = {"STRING": pa.string(), "INTEGER": pa.int64(), "NUMERIC": pa.float64(), "BOOLEAN": pa.bool_(),
                "JSON": pa.string()}


# ------------------------------------------------------------------ input


class TableInput:
    """A pandas DataFrame, pyarrow Table/RecordBatch or anything with ``to_arrow()`` (polars) or
    the Arrow stream protocol, read column by column."""

    def __init__(self, table: Any) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        elif not isinstance(table, pa.Table):
            pd = sys.modules.get("pandas")
            if pd is not None and isinstance(table, pd.DataFrame):
                self._frame = table
                self.names = [str(c) for c in table.columns]
                if len(set(self.names)) != len(self.names):
                    raise ValueError(f"the table has repeated column names: {self.names}")
                self.num_rows = len(table)
                return
            if callable(getattr(table, "to_arrow", None)):
                table = table.to_arrow()
            elif hasattr(table, "__arrow_c_stream__"):
                table = pa.table(table)
            else:
                raise TypeError(f"table must be a pandas DataFrame or a pyarrow Table (polars: via Arrow), "
                                f"got {type(table).__name__}")
        self._frame = table
        self.names = list(table.column_names)
        self.num_rows = table.num_rows

    def slice(self, start: int, stop: int) -> TableInput:
        part = TableInput.__new__(TableInput)
        part._frame = self._frame.iloc[start:stop] if not isinstance(self._frame, pa.Table) else \
            self._frame.slice(start, stop - start)
        part.names, part.num_rows = self.names, stop - start
        return part

    def column(self, name: str) -> Column:
        if isinstance(self._frame, pa.Table):
            return column_from_arrow(self._frame.column(name))
        return column_from_values(self._frame[name])

    def arrow(self, name: str) -> pa.Array:
        """The column as Arrow (mixed-type columns: each value spelled as text)."""
        if isinstance(self._frame, pa.Table):
            chunks = self._frame.column(name)
            return chunks.chunk(0) if chunks.num_chunks == 1 else chunks.combine_chunks()
        column = self.column(name)
        if column.kind == OBJECT:
            return pa.array([None if v is None else str(v) for v in column.values], type=pa.string())
        return pa.array(self._frame[name], from_pandas=True)


def require_column(names: Sequence[str], name: str, what: str) -> None:
    """Refuse a column the table lacks, naming the nearest one."""
    if name not in names:
        raise ValueError(f"{what} column {name!r} is not in the table{did_you_mean(name, names)} "
                         f"(columns: {listing(names)})")


def _subject_keys(part: TableInput, subject: str) -> tuple[pa.Array, np.ndarray]:
    """The subject keys as strings (``""`` where null) and the null mask."""
    keys = part.arrow(subject)
    if pa.types.is_dictionary(keys.type):
        keys = keys.dictionary_decode()
    if pa.types.is_integer(keys.type):
        keys = keys.cast(pa.large_string())
    elif not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
        raise ValueError(f"subject column {subject!r} must hold strings (or integers), got {keys.type}")
    missing = keys.is_null().to_numpy(zero_copy_only=False)
    return keys.fill_null(""), missing


# ------------------------------------------------------------------ the flag walk


@dataclass
class _Matches:
    """Per row: the matched allocation and split (indices into the flag, -1: none)."""

    allocation: np.ndarray
    split: np.ndarray


class _Rows:
    """One chunk's attribute columns as the flag's conditions name them, read once each."""

    def __init__(self, part: TableInput, subject: str, keys: pa.Array, obfuscated: bool) -> None:
        self.part, self.subject, self.keys = part, subject, keys
        self.by_name = {(md5_hex(n) if obfuscated else n): n for n in part.names if n != subject}
        self.cache: dict[str, Column | None] = {}

    def column(self, attribute: str, is_id: bool) -> Column | None:
        key = f"id:{attribute}" if is_id else attribute
        if key not in self.cache:
            name = self.by_name.get(attribute)
            column = None if name is None else self.part.column(name)
            if is_id and (column is None or column.missing.any()):  # a missing id reads the subject key
                ids = column_from_arrow(self.keys)
                if column is not None:
                    ids = object_column([ids_value if column.missing[i] else column_value(column, i)
                                         for i, ids_value in enumerate(self.keys.to_pylist())])
                column = ids
            self.cache[key] = column
        return self.cache[key]


def column_value(column: Column, row: int) -> Any:
    """Row ``row``'s value as the single call sees it (``None``: missing)."""
    if column.missing[row]:
        return None
    v = column.values[row]
    if column.kind == STRING:
        return column.levels[int(v)].as_py()
    if column.kind == OBJECT:
        return v
    return {FLOAT: float, INT: int, BOOL: bool}[column.kind](v)


def _match(flag: Flag, rows: _Rows, subjects: SubjectBytes, eligible: np.ndarray, now: float,
           obfuscated: bool) -> _Matches:
    n = len(eligible)
    allocation = np.full(n, -1, dtype=np.int32)
    split_of = np.full(n, -1, dtype=np.int32)
    pending = eligible.copy()
    shard_of: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # salt -> (shards, computed)
    masks: dict[int, np.ndarray] = {}
    for a, alloc in enumerate(flag.allocations):
        if not pending.any():
            break
        if (alloc.start_at is not None and now < alloc.start_at) or \
                (alloc.end_at is not None and now > alloc.end_at):
            continue
        if alloc.rules:
            ruled = np.zeros(n, dtype=bool)
            for rule in alloc.rules:
                ok = pending & ~ruled
                for c in rule.conditions:
                    if not ok.any():
                        break
                    if id(c) not in masks:
                        masks[id(c)] = _condition_mask(rows, c, obfuscated)
                    ok &= masks[id(c)]
                ruled |= ok
            candidates = pending & ruled
        else:
            candidates = pending.copy()
        for s, split in enumerate(alloc.splits):
            hit = candidates.copy()
            for sh in split.shards:
                if not hit.any():
                    break
                values, computed = shard_of.setdefault(sh.salt, (np.zeros(n, np.int64), np.zeros(n, bool)))
                todo = np.flatnonzero(hit & ~computed)
                if todo.size:
                    values[todo] = subjects.shards(todo, f"{sh.salt}-", flag.total_shards)[:, 0]
                    computed[todo] = True
                inside = np.zeros(n, dtype=bool)
                for start, end in sh.ranges:
                    inside |= (values >= start) & (values < end)
                hit &= inside
            if hit.any():
                allocation[hit], split_of[hit] = a, s
                candidates &= ~hit
                pending &= ~hit
    return _Matches(allocation, split_of)


def _condition_mask(rows: _Rows, c: Any, obfuscated: bool) -> np.ndarray:
    column = rows.column(c.attribute, c.is_id)
    if column is None:  # the attribute is missing for every row
        return np.full(rows.part.num_rows, bool(c.predicate(None)))
    value = c.value
    if obfuscated:  # hashed sets can only be tested through the predicate; other values are base64
        value = None if c.operator in ("ONE_OF", "NOT_ONE_OF", "IS_NULL") else b64decode(value, c.attribute)
    return condition_mask(column, c.operator, value, c.predicate)


# ------------------------------------------------------------------ assignments


@dataclass
class _Assigned:
    """One chunk's assignment results and the pieces its events and bandit step need."""

    variation: pa.Array
    variation_key: pa.Array
    allocation: pa.Array
    reason: pa.Array
    matched: np.ndarray  # bool (n,)
    variation_index: np.ndarray  # into the flag's serving variations, -1: default
    events: pa.Table | None


def _typed_column(values: list[Any], index: np.ndarray, default: Any, variation_type: str | None) -> pa.Array:
    """``values[index]``, ``default`` where ``index`` is -1, as one Arrow column."""
    kind = _ARROW_TYPES.get(variation_type) if variation_type else None
    if variation_type == "JSON":
        values = [json.dumps(v) for v in values]
        default = None if default is None else json.dumps(default)
    try:
        pool = pa.array(values + [default], type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pool = pa.array([None if v is None else str(v) for v in values + [default]], type=pa.string())
    return pool.take(pa.array(np.where(index < 0, len(values), index)))


def _assign_chunk(cfg: Configuration, flag_key: str, part: TableInput, subject: str, default: Any,
                  expected: tuple[str, ...] | None, now: float, stamp: str, want_events: bool) -> _Assigned:
    n = part.num_rows
    keys, no_key = _subject_keys(part, subject)
    flag = cfg.get_flag(flag_key)
    reason = np.full(n, None, dtype=object)
    index = np.full(n, -1, dtype=np.int64)
    if flag is None or not flag.enabled:
        reason[:] = FLAG_UNRECOGNIZED_OR_DISABLED
    elif expected is not None and flag.variation_type not in expected:
        reason[:] = TYPE_MISMATCH
    reason[no_key] = SUBJECT_KEY_MISSING
    variations = [] if flag is None else list(flag.variations.values())
    alloc_keys = pa.array([None], type=pa.string())
    events = None
    serving = flag is not None and flag.enabled and (expected is None or flag.variation_type in expected)
    if serving:
        rows = _Rows(part, subject, keys, cfg.obfuscated)
        subjects = SubjectBytes(keys)
        found = _match(flag, rows, subjects, ~no_key, now, cfg.obfuscated)
        reason[(found.allocation < 0) & ~no_key] = DEFAULT_ALLOCATION_NULL
        position = {v.key: i for i, v in enumerate(variations)}
        # (allocation, split) -> variation index, -1 where the variation is absent or its value bad
        split_table = []
        for alloc in flag.allocations:
            row = []
            for split in alloc.splits:
                i = position.get(split.variation_key, -1)
                row.append(-1 if i < 0 or variations[i].error is not None else i)
            split_table.append(row)
        width = max([len(r) for r in split_table] + [1])
        lut = np.full((len(split_table) + 1, width), -1, dtype=np.int64)
        for a, row in enumerate(split_table):
            lut[a, :len(row)] = row
        matched_rows = found.allocation >= 0
        index = np.where(matched_rows, lut[found.allocation, np.maximum(found.split, 0)], -1)
        bad = matched_rows & (index < 0)
        if bad.any():
            reason[bad] = ASSIGNMENT_ERROR
            for a, s in set(zip(found.allocation[bad].tolist(), found.split[bad].tolist())):
                alloc = flag.allocations[a]
                logger.warning("sortition: flag %r: variation %r of allocation %r is missing or does not fit "
                               "its type; serving the default", flag_key, alloc.splits[s].variation_key,
                               alloc.key)
        alloc_keys = pa.array([a.key for a in flag.allocations] + [None], type=pa.string())
        allocation_index = np.where(index >= 0, found.allocation, len(flag.allocations))
        if want_events:
            logs = np.array([a.do_log for a in flag.allocations] + [False])
            logged = logs[allocation_index] & (index >= 0)
            events = _assignment_events(flag, flag_key, part, subject, keys, found, logged, variations, index,
                                        stamp)
    else:
        allocation_index = np.zeros(n, dtype=np.int64)
    # The column has the flag's type whenever the flag can serve (every chunk alike), else the default's.
    values = [v.value for v in variations] if serving else []
    vtype = None if flag is None else flag.variation_type
    served = index >= 0
    return _Assigned(
        variation=_typed_column(values, index, default, vtype if serving else _type_of(default, vtype)),
        variation_key=_typed_column([v.key for v in variations], index, None, "STRING"),
        allocation=alloc_keys.take(pa.array(allocation_index)),
        reason=pa.array(reason, type=pa.string()),
        matched=served,
        variation_index=index,
        events=events,
    )


def _type_of(default: Any, variation_type: str | None) -> str | None:
    """The column type when every row serves the default: the default's, else the flag's."""
    for kind, name in ((bool, "BOOLEAN"), (int, "INTEGER"), (float, "NUMERIC"), (str, "STRING")):
        if isinstance(default, kind):
            return name
    return "JSON" if isinstance(default, (dict, list)) else variation_type


def _assignment_events(flag: Flag, flag_key: str, part: TableInput, subject: str, keys: pa.Array,
                       found: _Matches, logged: np.ndarray, variations: list, index: np.ndarray,
                       stamp: str) -> pa.Table:
    rows = np.flatnonzero(logged)
    # Every (allocation, split) numbered in order: its extra logging is one entry of a small pool.
    first_split = np.cumsum([0] + [len(a.splits) for a in flag.allocations])
    alloc_of = found.allocation[logged]
    split_ids = pa.array(first_split[alloc_of] + found.split[logged])
    pool = [list(split.extra_logging.items()) for a in flag.allocations for split in a.splits]
    extra = pa.array(pool or [[]], type=pa.map_(pa.string(), pa.string()))
    alloc_ids = pa.array(alloc_of)
    count = len(rows)
    attrs = [n for n in part.names if n != subject]
    table = pa.table({
        "featureFlag": pa.repeat(pa.scalar(flag_key, type=pa.string()), count),
        "allocation": pa.array([a.key for a in flag.allocations], type=pa.string()).take(alloc_ids),
        "experiment": pa.array([f"{flag_key}-{a.key}" for a in flag.allocations],
                               type=pa.string()).take(alloc_ids),
        "variation": pa.array([v.key for v in variations], type=pa.string()).take(pa.array(index[logged])),
        "subject": _at(keys, rows).cast(pa.string()),
        "subjectAttributes": _struct(part, attrs, logged),
        "extraLogging": extra.take(split_ids),
        "timestamp": pa.repeat(pa.scalar(stamp, type=pa.string()), count),
    })
    return table.replace_schema_metadata({"metaData": json.dumps(META_DATA)})


def _struct(part: TableInput, names: list[str], rows: np.ndarray) -> pa.Array:
    """The input columns ``names`` as one struct column, at the rows where ``rows`` (bool) is set."""
    if not names:
        return pa.array([{}] * int(rows.sum()), type=pa.struct([]))
    struct = pa.StructArray.from_arrays([part.arrow(n) for n in names], names=names)
    return struct if rows.all() else struct.filter(pa.array(rows))


def _at(array: pa.Array, rows: np.ndarray) -> pa.Array:
    """``array`` at ``rows`` (sorted distinct indices, as ``np.flatnonzero`` gives them): itself,
    with no copy, when that is every row (the common case: everyone logged)."""
    return array if len(rows) == len(array) else array.take(pa.array(rows))


def _chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return [(s, min(s + chunk_size, n)) for s in range(0, max(n, 1), chunk_size)] if n else [(0, 0)]


def assign_table(cfg: Configuration, flag_key: str, table: Any, *, subject: str = "subject",
                 default: Any = None, expected: tuple[str, ...] | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE,
                 table_logger: Any = None, with_events: bool = False) -> pa.Table | tuple[pa.Table, pa.Table]:
    """Every row's assignment: a table of ``subject, variation, variation_key, allocation,
    default_reason`` (``default_reason`` null where the flag served a variation, else the code:
    FLAG_UNRECOGNIZED_OR_DISABLED, TYPE_MISMATCH, DEFAULT_ALLOCATION_NULL, ASSIGNMENT_ERROR,
    SUBJECT_KEY_MISSING). See ``Client.assign_table``."""
    source = TableInput(table)
    require_column(source.names, subject, "subject")
    now, stamp = time(), now_rfc3339()
    want_events = with_events or table_logger is not None
    results, events = [], []
    for start, stop in _chunks(source.num_rows, chunk_size):
        part = source.slice(start, stop)
        got = _assign_chunk(cfg, flag_key, part, subject, default, expected, now, stamp, want_events)
        results.append(_result_table(part, subject, got))
        if got.events is not None:
            events.append(got.events)
    out = _concat(results)
    event_table = _concat(events) if events else None
    _deliver(table_logger, event_table)
    if with_events:
        return out, event_table if event_table is not None else pa.table({})
    return out


def _result_table(part: TableInput, subject: str, got: _Assigned, extra: Mapping[str, pa.Array] | None = None
                  ) -> pa.Table:
    columns = {"subject": _subject_keys(part, subject)[0].cast(pa.string()), "variation": got.variation,
               "variation_key": got.variation_key, "allocation": got.allocation}
    columns.update(extra or {})
    columns["default_reason"] = got.reason
    return pa.table(columns)


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _deliver(method: Any, events: pa.Table | None) -> None:
    if method is None or events is None or events.num_rows == 0:
        return
    try:
        method(events)
    except Exception:  # noqa: BLE001 - a logger must not break scoring
        logger.exception("sortition: table logger %r failed; %d events not logged", method, events.num_rows)


# ------------------------------------------------------------------ bandits


def bandit_table(cfg: Configuration, flag_key: str, table: Any, actions: Any, *, subject: str = "subject",
                 default: str = "", chunk_size: int = DEFAULT_CHUNK_SIZE, assignment_logger: Any = None,
                 bandit_logger: Any = None, with_events: bool = False, log_offered: bool = True
                 ) -> pa.Table | tuple[pa.Table, pa.Table, pa.Table]:
    """Every row's variation and bandit action: ``subject, variation, variation_key, allocation,
    bandit, action, action_probability, action_score, optimality_gap, default_reason``. See
    ``Client.bandit_table``."""
    source = TableInput(table)
    require_column(source.names, subject, "subject")
    action_map = _action_map(actions)
    keys = _js_sorted(action_map)
    now, stamp = time(), now_rfc3339()
    want = with_events or assignment_logger is not None
    want_bandit = with_events or bandit_logger is not None
    results, assignment_events, bandit_events = [], [], []
    offered = json.dumps({k: {"numericAttributes": n, "categoricalAttributes": c}
                          for k, (n, c) in offered_groups(action_map).items()}) if log_offered else None
    for start, stop in _chunks(source.num_rows, chunk_size):
        part = source.slice(start, stop)
        got = _assign_chunk(cfg, flag_key, part, subject, default, ("STRING",), now, stamp, want)
        extra, events = _bandit_chunk(cfg, flag_key, part, subject, got, action_map, keys, stamp, want_bandit)
        results.append(_result_table(part, subject, got, extra))
        if got.events is not None:
            assignment_events.append(got.events)
        if events is not None:
            bandit_events.append(events)
    out = _concat(results)
    a_events = _concat(assignment_events) if assignment_events else pa.table({})
    b_events = _concat(bandit_events) if bandit_events else pa.table({})
    if offered is not None and b_events.num_columns:
        b_events = b_events.replace_schema_metadata({**(b_events.schema.metadata or {}),
                                                     b"sortitionOfferedActions": offered.encode()})
    _deliver(assignment_logger, a_events if a_events.num_columns else None)
    _deliver(bandit_logger, b_events if b_events.num_columns else None)
    if with_events:
        return out, a_events, b_events
    return out


def _action_map(actions: Any) -> dict[str, Any]:
    if isinstance(actions, Mapping):
        return dict(actions)
    if isinstance(actions, str):
        raise TypeError("actions must be a dict {action_key: attributes} or a list of action keys, "
                        "not a string")
    return {key: None for key in actions}


def _bandit_chunk(cfg: Configuration, flag_key: str, part: TableInput, subject: str, got: _Assigned,
                  action_map: dict[str, Any], keys: list[str], stamp: str, want_events: bool
                  ) -> tuple[dict[str, pa.Array], pa.Table | None]:
    n = part.num_rows
    chosen = np.full(n, -1, dtype=np.int64)
    probability = np.full(n, np.nan)
    score = np.full(n, np.nan)
    gap = np.full(n, np.nan)
    bandit_of = np.full(n, -1, dtype=np.int64)
    bandit_keys: list[str] = []
    versions: list[str | None] = []
    flag = cfg.get_flag(flag_key)
    subject_keys = None
    columns: dict[str, Column | None] = {}
    if action_map and got.matched.any() and flag is not None:
        variations = list(flag.variations.values())
        for i in np.unique(got.variation_index[got.matched]).tolist():
            link = cfg.bandit_link(flag_key, variations[i].value)
            if link is None:
                continue
            model = cfg.bandits.get(link.bandit_key)
            if model is None:
                logger.warning("sortition: no model for bandit %r (flag %r); serving no action",
                               link.bandit_key, flag_key)
                continue
            rows = np.flatnonzero(got.matched & (got.variation_index == i))
            if subject_keys is None:
                subject_keys = SubjectBytes(_subject_keys(part, subject)[0])
            b = len(bandit_keys)
            bandit_keys.append(link.bandit_key)
            versions.append(model.model_version or link.model_version)
            picked = _evaluate(flag_key, part, subject, rows, subject_keys, action_map, keys, model, columns)
            chosen[rows], probability[rows], score[rows], gap[rows] = picked
            bandit_of[rows] = b
    acted = chosen >= 0
    key_pool = pa.array(keys + [None], type=pa.string())
    action = key_pool.take(pa.array(np.where(acted, chosen, len(keys))))
    bandit = pa.array(bandit_keys + [None], type=pa.string()).take(pa.array(np.where(acted, bandit_of,
                                                                                      len(bandit_keys))))
    extra = {
        "bandit": bandit,
        "action": action,
        "action_probability": pa.array(probability, mask=~acted),
        "action_score": pa.array(score, mask=~acted),
        "optimality_gap": pa.array(gap, mask=~acted),
    }
    events = None
    if want_events:
        rows = np.flatnonzero(acted)
        version_pool = pa.array(versions + [None], type=pa.string())
        events = pa.table({
            "flagKey": pa.repeat(pa.scalar(flag_key, type=pa.string()), len(rows)),
            "banditKey": _at(bandit, rows),
            "subject": _at(_subject_keys(part, subject)[0], rows).cast(pa.string()),
            "action": _at(action, rows),
            "actionProbability": _at(pa.array(probability), rows),
            "optimalityGap": _at(pa.array(gap), rows),
            "modelVersion": version_pool.take(pa.array(bandit_of[acted])),
            "subjectNumericAttributes": _group_struct(part, subject, rows, numeric=True),
            "subjectCategoricalAttributes": _group_struct(part, subject, rows, numeric=False),
            "actionNumericAttributes": _action_struct(action_map, keys, chosen[acted], numeric=True),
            "actionCategoricalAttributes": _action_struct(action_map, keys, chosen[acted], numeric=False),
            "timestamp": pa.repeat(pa.scalar(stamp, type=pa.string()), len(rows)),
        }).replace_schema_metadata({"metaData": json.dumps(META_DATA)})
    return extra, events


def _evaluate(flag_key: str, part: TableInput, subject: str, rows: np.ndarray, subjects: SubjectBytes,
              actions: dict[str, Any], keys: list[str], model: BanditModel, columns: dict
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(chosen action index into ``keys``, its probability, score, optimality gap) for ``rows``."""
    m = len(rows)
    scores = _score_matrix(part, subject, rows, keys, actions, model, columns)
    suffixes = ("",) + tuple(f"-{a}" for a in keys)  # the threshold's hash, then each action's
    hashed = subjects.shards(rows, f"{flag_key}-", BANDIT_ASSIGNMENT_SHARDS, suffixes)
    threshold = hashed[:, 0] / BANDIT_ASSIGNMENT_SHARDS
    chosen, weights, top = choose_actions(scores, model, threshold, hashed[:, 1:])
    every = np.arange(m)
    score = scores[every, chosen]
    probability = weights[every, chosen]
    gap = top - score
    unusual = np.flatnonzero(~np.isfinite(scores).all(axis=1))
    for r in unusual.tolist():  # non-finite scores: the single evaluator decides, exactly
        row = int(rows[r])
        e = evaluate_bandit(flag_key, subjects.text(row), _row_dict(part, subject, row), actions, model)
        chosen[r], score[r], probability[r], gap[r] = keys.index(e.action_key), e.action_score, \
            e.action_weight, e.optimality_gap
    return chosen, probability, score, gap


def _row_dict(part: TableInput, subject: str, row: int) -> dict[str, Any]:
    out = {}
    for name in part.names:
        if name != subject:
            v = column_value(part.column(name), row)
            if v is not None:
                out[name] = v
    return out


def _score_matrix(part: TableInput, subject: str, rows: np.ndarray, keys: list[str], actions: dict[str, Any],
                  model: BanditModel, columns: dict) -> np.ndarray:
    """Scores ``(m, k)``: per action, intercept + subject numeric + subject categorical + action
    numeric + action categorical, each group summed from 0 in the model's order (the single call's)."""
    m = len(rows)
    names = set(part.names) - {subject}

    def column(name: str) -> Column | None:
        if name not in columns:
            columns[name] = part.column(name) if name in names else None
        return columns[name]

    numeric_memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    categorical_memo: dict[str, tuple[list[str] | pa.Array, np.ndarray]] = {}

    def numeric(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in numeric_memo:
            numeric_memo[name] = _numeric_group(column(name), rows)
        return numeric_memo[name]

    def categorical(name: str) -> tuple[pa.Array, np.ndarray]:
        if name not in categorical_memo:
            categorical_memo[name] = _categorical_group(column(name), rows)
        return categorical_memo[name]

    def coefficients(name: str, table: Mapping[str, float], missing: float) -> np.ndarray:
        levels, codes = categorical(name)
        return _lookup(levels, table, missing)[codes]

    return score_matrix(m, keys, actions, model, numeric, coefficients)


def _numeric_group(column: Column | None, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values float64, valid) at ``rows``: a finite int/float is numeric; anything else is missing."""
    m = len(rows)
    if column is None or column.kind in (BOOL, STRING):
        return np.zeros(m), np.zeros(m, dtype=bool)
    if column.kind == OBJECT:
        vals = [numeric_value(v) for v in column.values[rows].tolist()]
        valid = np.fromiter((v is not None for v in vals), dtype=bool, count=m)
        return np.fromiter((0.0 if v is None else v for v in vals), dtype=np.float64, count=m), valid
    x = column.values[rows].astype(np.float64)
    return x, ~column.missing[rows] & np.isfinite(x)


def _categorical_group(column: Column | None, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """(levels, codes with ``len(levels)`` for missing) at ``rows``: strings are themselves,
    booleans "true"/"false", numbers are not categorical (a flat dict's numbers are numeric)."""
    m = len(rows)
    if column is None or column.kind in (FLOAT, INT):
        return pa.array([], type=pa.large_string()), np.zeros(m, dtype=np.intp)
    if column.kind == STRING:
        codes = column.values[rows]
        return column.levels, np.where(codes < 0, len(column.levels), codes)
    if column.kind == BOOL:
        codes = column.values[rows].astype(np.intp)
        return pa.array(["false", "true"], type=pa.large_string()), np.where(column.missing[rows], 2, codes)
    seen: dict[str, int] = {}
    spelled = [categorical_key(v, True) for v in column.values[rows].tolist()]
    codes = np.fromiter((-1 if v is None else seen.setdefault(v, len(seen)) for v in spelled), dtype=np.intp,
                        count=m)
    return pa.array(list(seen), type=pa.large_string()), np.where(codes < 0, len(seen), codes)


def _lookup(levels: pa.Array, table: Mapping[str, float], missing: float) -> np.ndarray:
    """Coefficient per level, then ``missing`` (for the missing code ``len(levels)``)."""
    names = list(table)
    where = pc.index_in(levels, value_set=pa.array(names, type=pa.large_string()))
    coefficients = np.array([table[n] for n in names] + [missing], dtype=np.float64)
    idx = where.fill_null(len(names)).to_numpy(zero_copy_only=False).astype(np.intp)
    return np.append(coefficients[idx], missing)


def _group_struct(part: TableInput, subject: str, idx: np.ndarray, numeric: bool) -> pa.Array:
    """The logged rows' (``idx``, sorted distinct) numeric (float64) or categorical (string)
    attributes, null where missing."""
    arrays, names = [], []
    for name in part.names:
        if name == subject:
            continue
        column = part.column(name)
        if numeric:
            x, valid = _numeric_group(column, idx)
            if valid.any():
                arrays.append(pa.array(x, mask=~valid))
                names.append(name)
        elif column.kind == STRING and column.raw is not None:  # strings are themselves: no encoding
            if not column.missing[idx].all():
                arrays.append(_at(column.raw, idx).cast(pa.string()))
                names.append(name)
        else:
            levels, codes = _categorical_group(column, idx)
            if (codes < len(levels)).any():
                pool = pa.concat_arrays([levels.cast(pa.large_string()), pa.array([None], pa.large_string())])
                arrays.append(pool.take(pa.array(codes)).cast(pa.string()))
                names.append(name)
    if not names:
        return pa.array([{}] * len(idx), type=pa.struct([]))
    return pa.StructArray.from_arrays(arrays, names=names)


def _action_struct(actions: dict[str, Any], keys: list[str], chosen: np.ndarray, numeric: bool) -> pa.Array:
    """The chosen actions' cleaned numeric or categorical attributes (built once per action)."""
    groups = offered_groups({k: actions[k] for k in keys})
    per_action = [groups[k][0 if numeric else 1] for k in keys]
    names = sorted({n for g in per_action for n in g})
    if not names:
        return pa.array([{}] * len(chosen), type=pa.struct([]))
    kind = pa.float64() if numeric else pa.string()
    pool = pa.array(per_action, type=pa.struct([(n, kind) for n in names]))
    return pool.take(pa.array(chosen))
