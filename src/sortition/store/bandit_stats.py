"""Bandit training's sufficient statistics, computed where the events live.

A per-action ridge regression needs only, per action, X'WX and X'Wy of its design matrix (plus the
event count and the weight sum). This module computes them in the event store, in SQL that DuckDB
and PostgreSQL both run, so training never loads the events into Python:

1. :func:`attribute_summary` (one scan of the selected decisions): per action, every attribute key
   of the four attribute groups; for numeric groups the count, mean and population standard
   deviation of its finite numbers; for categorical groups the count of every value *code*.
2. The caller turns the summary into design columns (:class:`NumericSpec`, :class:`CategoricalSpec`),
   and :func:`action_moments` computes, in ONE aggregation over the decision/reward join grouped by
   action, the weighted cross-products of those columns.

The store knows nothing of feature layouts or models (``sortition.learning.sufficient`` does); the
specs here are plain data. A categorical *code* is ``"s" + text`` for a JSON string and ``"j" +
JSON text`` for any other JSON value (numbers, booleans), so the caller can stringify each one
exactly as the serving evaluator does; JSON ``null`` and absent keys have no code (missing).

Design columns, in this order: the intercept (1); per numeric spec ``z = (x - mean) / scale`` (0
when the value is missing) and its missing indicator; per categorical spec one indicator per value
(its codes, where the row's action keeps that value) and a missing-or-unknown indicator.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sortition.store.queries import check_window, decision_filter, decision_reward_sql

# (group, kind) -> the bandit_events column holding that attribute group as JSON text
GROUP_COLUMNS = {
    ("subject", "numeric"): "subject_numeric_attributes",
    ("subject", "categorical"): "subject_categorical_attributes",
    ("action", "numeric"): "action_numeric_attributes",
    ("action", "categorical"): "action_categorical_attributes",
}
_ALIAS = {g: f"a_{g[0][0]}{g[1][0]}" for g in GROUP_COLUMNS}  # short names of the parsed columns
_DOUBLE = "DOUBLE PRECISION"


@dataclass(frozen=True)
class NumericSpec:
    """Two design columns of one numeric attribute: standardized value and missing indicator.

    ``mean`` and ``scale`` are per action (an action absent from them gets 0 and 1: its columns are
    not used)."""

    group: str
    key: str
    mean: Mapping[str, float]
    scale: Mapping[str, float]


@dataclass(frozen=True)
class CategoricalSpec:
    """One indicator per value, then missing-or-unknown, of one categorical attribute.

    ``values``: per value, (the codes that stringify to it, the actions that keep it as a column);
    a row whose code is not kept by its action counts as missing."""

    group: str
    key: str
    values: tuple[tuple[tuple[str, ...], frozenset[str]], ...]


@dataclass(frozen=True)
class AttributeSummary:
    """What :func:`attribute_summary` returns.

    Attributes:
        events: action -> number of decisions.
        numeric: (action, group, key, rows with the key, rows with a finite number, mean, std) tuples.
        categorical: (action, group, key, code or None, rows) tuples.
    """

    events: dict[str, int]
    numeric: tuple[tuple[str, str, str, int, int, float, float], ...]
    categorical: tuple[tuple[str, str, str, str | None, int], ...]


@dataclass(frozen=True)
class ActionMoments:
    """One action's weighted moments over the design columns of the specs (P columns).

    Attributes: n (events), weight_sum (Σw), weighted_reward_sum (Σwy), xtwx ((P, P) Σ w x x'),
    xtwy ((P,) Σ w x y); w are the raw (unnormalized) training weights.
    """

    n: int
    weight_sum: float
    weighted_reward_sum: float
    xtwx: np.ndarray
    xtwy: np.ndarray


def _literal(text: str) -> str:
    """A SQL string literal. '?' and '%' are spelled chr(63)/chr(37): the shared SQL reserves '?'
    for placeholders (and psycopg '%')."""
    parts = []
    buf = ""
    for ch in text:
        if ch in "?%":
            if buf:
                parts.append("'" + buf.replace("'", "''") + "'")
                buf = ""
            parts.append(f"chr({ord(ch)})")
        else:
            buf += ch
    if buf or not parts:
        parts.append("'" + buf.replace("'", "''") + "'")
    return "(" + " || ".join(parts) + ")"


class _Json:
    """The JSON accessors of one dialect."""

    def __init__(self, dialect: str):
        if dialect not in ("duckdb", "postgresql"):
            raise ValueError(f"unknown SQL dialect {dialect!r}")
        self.pg = dialect == "postgresql"

    def parsed(self, column: str) -> str:
        return f"CAST({column} AS jsonb)" if self.pg else column

    def each(self, column: str) -> tuple[str, str, str]:
        """(FROM-clause join, type expression, value expression) over every member of ``column``;
        the member's key is ``e.key``."""
        if self.pg:
            return (
                f"CROSS JOIN LATERAL jsonb_each(CAST({column} AS jsonb)) AS e",
                "jsonb_typeof(e.value)",
                "e.value",
            )
        return f", json_each({column}) AS e", "e.type", "e.value"

    def _member(self, alias: str, key: str) -> tuple[str, str]:
        """(type expression, member expression) of ``alias``'s member ``key``."""
        if self.pg:
            return f"jsonb_typeof({alias} -> {_literal(key)})", f"({alias} -> {_literal(key)})"
        path = _literal("/" + key.replace("~", "~0").replace("/", "~1"))
        return f"json_type({alias}, {path})", f"json_extract({alias}, {path})"

    def number(self, alias: str, key: str) -> str:
        return self.number_of(*self._member(alias, key))

    def number_of(self, typ: str, value: str) -> str:
        """A member's number (from its type and value), NULL unless a finite JSON number (DuckDB reads
        Python's NaN / Infinity tokens as numbers; PostgreSQL refuses them)."""
        if self.pg:
            return f"CASE WHEN {typ} = 'number' THEN CAST({value} #>> '{{}}' AS {_DOUBLE}) END"
        return (
            f"CASE WHEN {typ} IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND isfinite(CAST({value} AS {_DOUBLE})) "
            f"THEN CAST({value} AS {_DOUBLE}) END"
        )

    def code_of(self, typ: str, value: str) -> str:
        """A member's categorical code (see the module docstring), NULL for JSON null."""
        if self.pg:
            return (
                f"CASE {typ} WHEN 'string' THEN 's' || ({value} #>> '{{}}') WHEN 'null' THEN NULL "
                f"ELSE 'j' || CAST({value} AS TEXT) END"
            )
        return (
            f"CASE {typ} WHEN 'VARCHAR' THEN 's' || ({value} ->> '$') WHEN 'NULL' THEN NULL "
            f"ELSE 'j' || CAST({value} AS VARCHAR) END"
        )

    def code(self, alias: str, key: str) -> str:
        typ, member = self._member(alias, key)
        return self.code_of(typ, member)

    def array(self, items: Sequence[str]) -> str:
        return ("ARRAY[" if self.pg else "list_value(") + ", ".join(items) + ("]" if self.pg else ")")


def attribute_summary(
    store: Any,
    *,
    flag_key: str | None = None,
    bandit_key: str | None = None,
    until: dt.datetime | None = None,
) -> AttributeSummary:
    """Per action, the attribute keys and their statistics (see :class:`AttributeSummary`), over the
    decisions that ``EventStore.bandit_rewards`` would return for the same filters."""
    backend = store._backend
    js = _Json(backend.dialect)
    where, params = decision_filter(flag_key, bandit_key, until)
    counts = backend.frame(
        f"SELECT action, COUNT(*) AS n FROM bandit_events WHERE {where} GROUP BY action", params
    )
    events = {str(a): int(n) for a, n in zip(counts["action"], counts["n"])}
    numeric: list[tuple] = []
    categorical: list[tuple] = []
    for (group, kind), column in GROUP_COLUMNS.items():
        join, typ, value = js.each("d." + column)
        if kind == "numeric":
            sql = (
                f"SELECT action, k, COUNT(*) AS n, COUNT(x) AS n_x, AVG(x) AS mean, STDDEV_POP(x) AS sd "
                f"FROM (SELECT d.action AS action, e.key AS k, {js.number_of(typ, value)} AS x "
                f"FROM bandit_events d {join} WHERE {where}) m GROUP BY action, k"
            )
            for a, k, n, n_x, mean, sd in backend.frame(sql, params).itertuples(index=False):
                present = int(n_x)
                numeric.append(
                    (
                        str(a),
                        group,
                        str(k),
                        int(n),
                        present,
                        float(mean) if present else 0.0,
                        float(sd) if present else 0.0,
                    )
                )
        else:
            sql = (
                f"SELECT action, k, code, COUNT(*) AS n FROM (SELECT d.action AS action, e.key AS k, "
                f"{js.code_of(typ, value)} AS code FROM bandit_events d {join} WHERE {where}) c "
                "GROUP BY action, k, code"
            )
            for a, k, c, n in backend.frame(sql, params).itertuples(index=False):
                categorical.append((str(a), group, str(k), c if isinstance(c, str) else None, int(n)))
    return AttributeSummary(events, tuple(numeric), tuple(categorical))


def _case_by_action(values: Mapping[str, float], default: float, params: list[Any]) -> str:
    """CASE action WHEN a THEN value ... END, values bound as parameters."""
    if len(set(values.values())) <= 1 and values:
        params.append(float(next(iter(values.values()))))
        return f"CAST(? AS {_DOUBLE})"
    parts = []
    for action, value in values.items():
        params.extend([action, float(value)])
        parts.append(f"WHEN ? THEN CAST(? AS {_DOUBLE})")
    params.append(float(default))
    return f"(CASE action {' '.join(parts)} ELSE CAST(? AS {_DOUBLE}) END)"


def _in_list(items: Sequence[str]) -> str:
    return "(" + ", ".join(_literal(i) for i in items) + ")"


def _categorical_columns(
    spec: CategoricalSpec, code: str, all_actions: frozenset[str], params: list[Any]
) -> list[str]:
    conditions: list[tuple[str, list[str]]] = []
    for codes, actions in spec.values:
        cond, keep = f"{code} IN {_in_list(codes)}", []
        if not all_actions <= actions:
            keep = sorted(actions)
            cond += f" AND action IN ({', '.join('?' for _ in keep)})"
        conditions.append((cond, keep))
    columns = []
    for cond, keep in conditions:
        columns.append(f"CASE WHEN {cond} THEN 1.0 ELSE 0.0 END")
        params.extend(keep)
    if conditions:
        columns.append(f"CASE WHEN {' OR '.join(f'({c})' for c, _ in conditions)} THEN 0.0 ELSE 1.0 END")
        params.extend(a for _, keep in conditions for a in keep)
    else:
        columns.append("1.0")
    return columns


def _zero_pairs(
    numeric: Sequence[NumericSpec], categorical: Sequence[CategoricalSpec]
) -> set[tuple[int, int]]:
    """Pairs (i < j) of columns whose product is 0 in every row: a value and its own missing
    indicator, two indicators of the same categorical attribute."""
    zero: set[tuple[int, int]] = set()
    j = 1
    for _ in numeric:
        zero.add((j, j + 1))
        j += 2
    for spec in categorical:
        block = range(j, j + len(spec.values) + 1)
        zero.update((a, b) for a in block for b in block if a < b)
        j += len(spec.values) + 1
    return zero


def action_moments(
    store: Any,
    metric: str,
    numeric: Sequence[NumericSpec],
    categorical: Sequence[CategoricalSpec],
    *,
    flag_key: str | None = None,
    bandit_key: str | None = None,
    window: Any = None,
    aggregate: str = "sum",
    until: dt.datetime | None = None,
    importance_weighting: str = "ips",
    max_importance_weight: float = 20.0,
) -> dict[str, ActionMoments]:
    """Per action, the weighted moments of the design columns (module docstring), in one aggregation
    over the decision/reward join of ``EventStore.bandit_rewards`` (same filters, same rewards).

    Weights: ``"ips"``: min(1 / action_probability, max_importance_weight); ``"none"``: 1.
    Returns action -> :class:`ActionMoments` for every action with decisions.
    """
    backend = store._backend
    js = _Json(backend.dialect)
    base, params = decision_reward_sql(
        flag_key, bandit_key, metric, check_window(window), aggregate, until, ordered=False
    )
    if importance_weighting == "ips":
        weight = f"LEAST(1.0 / action_probability, CAST(? AS {_DOUBLE}))"
        params.append(float(max_importance_weight))
    elif importance_weighting == "none":
        weight = "1.0"
    else:
        raise ValueError(f"importance_weighting is {importance_weighting!r}; use 'ips' or 'none'")
    groups = {
        (s.group, kind) for kind, specs in (("numeric", numeric), ("categorical", categorical)) for s in specs
    }
    parsed = ", ".join(f"{js.parsed(GROUP_COLUMNS[g])} AS {_ALIAS[g]}" for g in sorted(groups))
    raw = [f"x{i}" for i in range(len(numeric))] + [f"c{i}" for i in range(len(categorical))]
    extracted = [js.number(_ALIAS[(s.group, "numeric")], s.key) for s in numeric]
    extracted += [js.code(_ALIAS[(s.group, "categorical")], s.key) for s in categorical]
    # Layer 1 parses each attribute once; layer 2 builds the design columns; the outer query sums.
    layer1 = ", ".join(
        ["action", f"{weight} AS w", "reward AS y"] + [f"{e} AS {name}" for e, name in zip(extracted, raw)]
    )
    layer0 = "action, action_probability, reward" + (f", {parsed}" if parsed else "")
    columns: list[str] = []
    for i, spec in enumerate(numeric):
        mean = _case_by_action(spec.mean, 0.0, params)
        scale = _case_by_action(spec.scale, 1.0, params)
        columns += [
            f"CASE WHEN x{i} IS NULL THEN 0.0 ELSE (x{i} - {mean}) / {scale} END",
            f"CASE WHEN x{i} IS NULL THEN 1.0 ELSE 0.0 END",
        ]
    all_actions = frozenset(a for s in numeric for a in s.mean) | frozenset(
        a for s in categorical for _, acts in s.values for a in acts
    )
    for i, spec in enumerate(categorical):
        columns += _categorical_columns(spec, f"c{i}", all_actions, params)
    p = 1 + len(columns)
    layer2 = ", ".join(["action", "w", "y"] + [f"{c} AS f{j + 1}" for j, c in enumerate(columns)])
    name = ["1.0"] + [f"f{j}" for j in range(1, p)]
    zero = _zero_pairs(numeric, categorical)
    pairs = [(i, j) for i in range(p) for j in range(i, p) if (i, j) not in zero]
    products = [f"SUM(w * {name[i]} * {name[j]})" if i or j else "SUM(w)" for i, j in pairs]
    targets = [f"SUM(w * {name[i]} * y)" for i in range(p)]
    sql = f"""
WITH base AS ({base}
), parsed AS (
    SELECT {layer0} FROM base OFFSET 0
), extracted AS (
    SELECT {layer1} FROM parsed OFFSET 0
), design AS (
    SELECT {layer2} FROM extracted OFFSET 0
)
SELECT action, COUNT(*) AS n, SUM(w) AS w_sum, SUM(w * y) AS wy_sum,
       {js.array(products)} AS xtwx, {js.array(targets)} AS xtwy
FROM design GROUP BY action
"""
    frame = backend.frame(sql, params)
    out: dict[str, ActionMoments] = {}
    for action, n, w_sum, wy_sum, xtwx, xtwy in frame.itertuples(index=False):
        A = np.zeros((p, p))
        vals = np.asarray(xtwx, dtype=np.float64)
        for (i, j), v in zip(pairs, vals):
            A[i, j] = A[j, i] = v
        out[str(action)] = ActionMoments(
            int(n), float(w_sum), float(wy_sum), A, np.asarray(xtwy, dtype=np.float64)
        )
    return out
