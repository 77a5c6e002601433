"""The joins, as SQL both engines run unchanged.

Exposure/outcome join (experiments): a subject's arm is the variation of its FIRST exposure to the
flag (intent to treat: later exposures, even to another variation, do not move it). Outcomes of the
metric count when ``exposure <= outcome time < exposure + window`` (no upper bound without a
window), and only up to ``until`` when given. ``since`` keeps subjects whose first exposure is at or
after it (a subject first seen earlier is not counted again as new).

Decision/reward join (bandits): each outcome of the metric goes to the subject's LATEST bandit
decision at or before it (among the selected flag/bandit), if within the window. A decision with no
outcome gets reward 0 (sum, count, conversion).

Aggregates: ``sum`` (revenue: the total of the values), ``count`` (number of outcome events),
``conversion`` (1.0 if at least one outcome event has a value > 0, else 0.0).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

AGGREGATES = {
    "sum": "SUM(value)",
    "count": "COUNT(*)",
    "conversion": "MAX(CASE WHEN value > 0 THEN 1.0 ELSE 0.0 END)",
}


def check_aggregate(aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {sorted(AGGREGATES)}, got {aggregate!r}")
    return AGGREGATES[aggregate]


def check_window(window: Any) -> dt.timedelta | None:
    """An attribution window: a timedelta, a number of seconds, or None (no limit)."""
    if window is None:
        return None
    if isinstance(window, (int, float)) and not isinstance(window, bool):
        window = dt.timedelta(seconds=float(window))
    if hasattr(window, "to_pytimedelta"):
        window = window.to_pytimedelta()
    if not isinstance(window, dt.timedelta) or window <= dt.timedelta(0):
        raise ValueError(f"window must be a positive timedelta or number of seconds, got {window!r}")
    return window


def exposure_outcome_sql(
    flag_key: str, metric: str, window: dt.timedelta | None, aggregate: str,
    since: dt.datetime | None, until: dt.datetime | None,
) -> tuple[str, list[Any]]:
    agg = check_aggregate(aggregate)
    params: list[Any] = [flag_key]
    exposure_filter = ""
    if until is not None:
        exposure_filter += " AND ts < ?"
        params.append(until)
    first_filter = ""
    if since is not None:  # on the FIRST exposure: a subject seen before `since` is not new again
        first_filter = " AND ts >= ?"
        params.append(since)
    params.append(metric)
    outcome_filter = ""
    if window is not None:
        outcome_filter += " AND o.ts < e.ts + ?"
        params.append(window)
    if until is not None:
        outcome_filter += " AND o.ts < ?"
        params.append(until)
    sql = f"""
WITH ranked AS (
    SELECT subject, variation, allocation, cell, propensity, round, ts, subject_attributes,
           ROW_NUMBER() OVER (PARTITION BY subject ORDER BY ts, event_id) AS rn
    FROM assignments WHERE flag_key = ?{exposure_filter}
), first_exposure AS (
    SELECT * FROM ranked WHERE rn = 1{first_filter}
), attributed AS (
    SELECT e.subject AS subject, o.value AS value
    FROM first_exposure e JOIN outcomes o
      ON o.subject = e.subject AND o.metric = ? AND o.ts >= e.ts{outcome_filter}
), totals AS (
    SELECT subject, {agg} AS y FROM attributed GROUP BY subject
)
SELECT e.subject AS subject, e.variation AS arm, COALESCE(t.y, 0.0) AS y,
       e.propensity AS propensity, e.cell AS cell, e.round AS round,
       e.allocation AS allocation, e.ts AS exposed_at, e.subject_attributes AS subject_attributes
FROM first_exposure e LEFT JOIN totals t ON t.subject = e.subject
ORDER BY e.ts, e.subject
"""
    return sql, params


def decision_filter(
    flag_key: str | None, bandit_key: str | None, until: dt.datetime | None
) -> tuple[str, list[Any]]:
    """The WHERE condition on ``bandit_events`` that selects the decisions of a decision/reward join."""
    params: list[Any] = []
    where = "1 = 1"
    if flag_key is not None:
        where += " AND flag_key = ?"
        params.append(flag_key)
    if bandit_key is not None:
        where += " AND bandit_key = ?"
        params.append(bandit_key)
    if until is not None:
        where += " AND ts < ?"
        params.append(until)
    return where, params


def decision_reward_sql(
    flag_key: str | None, bandit_key: str | None, metric: str, window: dt.timedelta | None,
    aggregate: str, until: dt.datetime | None, ordered: bool = True,
) -> tuple[str, list[Any]]:
    """``ordered=False`` leaves out the final ORDER BY (for a caller that only aggregates)."""
    agg = check_aggregate(aggregate)
    decision_where, params = decision_filter(flag_key, bandit_key, until)
    params.append(metric)
    outcome_filter = ""
    if window is not None:
        outcome_filter += " AND o.ts < d.ts + ?"
        params.append(window)
    if until is not None:
        outcome_filter += " AND o.ts < ?"
        params.append(until)
    sql = f"""
WITH decisions AS (
    SELECT * FROM bandit_events WHERE {decision_where}
), candidates AS (
    SELECT d.event_id AS decision_id, o.value AS value,
           ROW_NUMBER() OVER (PARTITION BY o.event_id ORDER BY d.ts DESC, d.event_id DESC) AS rn
    FROM decisions d JOIN outcomes o
      ON o.subject = d.subject AND o.metric = ? AND o.ts >= d.ts{outcome_filter}
), rewards AS (
    SELECT decision_id, {agg} AS reward FROM candidates WHERE rn = 1 GROUP BY decision_id
)
SELECT d.event_id AS event_id, d.ts AS timestamp, d.flag_key AS flag_key, d.bandit_key AS bandit_key,
       d.model_version AS model_version, d.subject AS subject, d.action AS action,
       d.action_probability AS action_probability, d.optimality_gap AS optimality_gap,
       d.subject_numeric_attributes AS subject_numeric_attributes,
       d.subject_categorical_attributes AS subject_categorical_attributes,
       d.action_numeric_attributes AS action_numeric_attributes,
       d.action_categorical_attributes AS action_categorical_attributes,
       d.offered_actions AS offered_actions,
       COALESCE(r.reward, 0.0) AS reward
FROM decisions d LEFT JOIN rewards r ON r.decision_id = d.event_id
"""
    if ordered:
        sql += "ORDER BY d.ts, d.event_id\n"
    return sql, params
