"""Save and reload a :class:`SequentialExperiment` between processes (one round per day).

The state is one JSON document (no pickle): the settings, the committed state (round, active
arms, loser/winner streaks, every plan, every round's result, every row read so far) and the
shard salt. The fitted posterior and policy tree are not stored: ``advance`` refits them from the
rows, with a seed derived from (seed, round), and from the last fit's warm start (its forests' last
draw, which is stored), so a reloaded experiment computes exactly the same next plan as the original
from the same next round's data.

Floats are written with Python's shortest round-trip repr, so values come back bit-exact;
non-finite floats are written as ``{"$float": "nan"}`` to keep the file strict JSON. Writes go to a
temporary file in the same folder, then ``os.replace`` it over the target: a crash never leaves a
half-written state.

Integrity (docs/faults.md): the document carries ``checksum``, the SHA-256 of its canonical JSON
without that field; a file whose content does not match is refused, and so is every inconsistency
between its parts (row counts against the arrays, rounds against results and plans). Each write
keeps the state it replaces as ``<name>.prev``, the previous round's good state to restore.
Temporary files left by a process killed mid-write are removed by the next write.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sortition.experiment.cells import CellWeights, Plan, SegmentPlan, ShardBlock
from sortition.experiment.export import experiment_salt, shard_layout
from sortition.experiment.results import CellObservation, Graduation, Lift, RoundResult, SegmentResult
from sortition.experiment.state import ExperimentState
from sortition.posterior.warm import WarmStart
from sortition.userfiles import decode_error_place, not_text_message

STATE_FORMAT = "sortition.experiment-state"
# 1: the first release. 2: the document carries its checksum (version-1 files, which have none, are
# still read). 3: plans carry their segments' shard layouts (earlier files served the contiguous
# layout, which is what they load as; a Sortition that ignored the layouts would serve other arms).
STATE_VERSION = 3
_READS = (1, 2, 3)


# --- JSON values ------------------------------------------------------------------------------------
def _plain(value: Any, where: str) -> Any:
    """A JSON-ready copy: numpy scalars made plain, tuples as lists, non-finite floats tagged."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"$float": repr(value)}
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings to save as JSON, got {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    raise TypeError(f"{where}: {type(value).__name__} value {value!r} cannot be saved as JSON")


def _unfloat(obj: dict) -> Any:
    if obj.keys() == {"$float"}:
        return float(obj["$float"])
    return obj


# --- frames -------------------------------------------------------------------------------------------
def frame_to_json(frame: pd.DataFrame) -> dict[str, Any]:
    """Columns with their dtypes and values, restorable bit-exact by :func:`frame_from_json`."""
    columns = []
    for name in frame.columns:
        col = frame[name]
        dtype = str(col.dtype)
        if isinstance(col.dtype, pd.CategoricalDtype):
            values = [_plain(v, f"column {name!r}") for v in col.astype(object).where(col.notna(), None)]
            cats = [_plain(v, f"column {name!r}") for v in col.cat.categories]
            columns.append({"name": str(name), "dtype": "category", "categories": cats, "values": values})
            continue
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            values = [None if pd.isna(v) else v.isoformat() for v in col]
        elif col.dtype == object:
            values = [None if v is None or v is pd.NA else _plain(v, f"column {name!r}") for v in col]
        elif pd.api.types.is_extension_array_dtype(col.dtype):  # nullable Int64, boolean, Float64, string
            values = [None if pd.isna(v) else _plain(v, f"column {name!r}") for v in col]
        else:
            values = [_plain(v, f"column {name!r}") for v in col.tolist()]
        if not isinstance(name, str):
            raise TypeError(f"column names must be strings to save as JSON, got {name!r}")
        columns.append({"name": name, "dtype": dtype, "values": values})
    return {"n": len(frame), "columns": columns}


def frame_from_json(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The frame :func:`frame_to_json` wrote; ValueError when a column's length is not ``n``."""
    data = {}
    n = doc["n"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"inconsistent experiment state: the data's row count n is {n!r}")
    for col in doc["columns"]:
        dtype, values = col["dtype"], col["values"]
        if len(values) != n:
            raise ValueError(f"inconsistent experiment state: the data says n = {n} rows but column "
                             f"{col['name']!r} has {len(values)} values")
        if dtype == "category":
            data[col["name"]] = pd.Categorical(values, categories=col["categories"])
        elif dtype.startswith("datetime64"):
            data[col["name"]] = pd.Series(pd.to_datetime(values), dtype=dtype)
        elif dtype == "object":
            data[col["name"]] = pd.Series(values, dtype=object)
        else:
            data[col["name"]] = pd.Series(values, dtype=dtype)
    frame = pd.DataFrame(data, index=pd.RangeIndex(int(doc["n"])))
    return frame


# --- plans and results -------------------------------------------------------------------------------
def _rule_to_json(rule: Any) -> Any:
    return None if rule is None else rule.to_json()


def _rule_from_json(obj: Any) -> Any:
    if obj is None:
        return None
    from sortition.rules import rule_from_json

    return rule_from_json(obj)


def _segment_plan_to_json(s: SegmentPlan) -> dict[str, Any]:
    return {
        "id": s.id,
        "rule": _rule_to_json(s.rule),
        "description": s.description,
        "optimized": s.optimized,
        "cells": s.cells,
        "shards": None if s.shards is None else [[b.arm, b.cell, [list(r) for r in b.ranges]] for b in s.shards],
    }


def _segment_plan_from_json(d: Mapping[str, Any]) -> SegmentPlan:
    shards = d.get("shards")  # absent before version 3: the contiguous layout, which was served then
    return SegmentPlan(
        id=d["id"],
        rule=_rule_from_json(d["rule"]),
        description=d["description"],
        optimized=dict(d["optimized"]),
        cells={c: dict(v) for c, v in d["cells"].items()},
        shards=None if shards is None else tuple(
            ShardBlock(str(arm), str(cell), tuple((int(a), int(b)) for a, b in ranges)) for arm, cell, ranges in shards),
    )


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "round": plan.round,
        "arms": list(plan.arms),
        "active_arms": list(plan.active_arms),
        "weights": {"control": plan.weights.control, "explore": plan.weights.explore},
        "segments": [_segment_plan_to_json(s) for s in plan.segments],
        "default": _segment_plan_to_json(plan.default),
    }


def plan_from_json(d: Mapping[str, Any]) -> Plan:
    plan = Plan(
        arms=tuple(d["arms"]),
        active_arms=tuple(d["active_arms"]),
        weights=CellWeights(d["weights"]["control"], d["weights"]["explore"]),
        segments=tuple(_segment_plan_from_json(s) for s in d["segments"]),
        default=_segment_plan_from_json(d["default"]),
        round=int(d["round"]),
    )
    for segment in (*plan.segments, plan.default):
        shard_layout(segment, plan.arms)  # ValueError for a layout that does not tile or fit the weights
    return plan


def _lift_json(x: Lift) -> dict[str, Any]:
    return {
        "arm": x.arm,
        "mean": x.mean,
        "lower": x.lower,
        "upper": x.upper,
        "prob_positive": x.prob_positive,
    }


def _result_to_json(r: RoundResult) -> dict[str, Any]:
    return {
        "round": r.round,
        "n_round": r.n_round,
        "n_total": r.n_total,
        "lifts": [_lift_json(x) for x in r.lifts],
        "ipw_arm_means": r.ipw_arm_means,
        "segments": [
            {
                "id": s.id,
                "description": s.description,
                "rule": _rule_to_json(s.rule),
                "share": s.share,
                "best_arm": s.best_arm,
                "arm_best_probabilities": s.arm_best_probabilities,
                "lifts": [_lift_json(x) for x in s.lifts],
                "expected_loss": s.expected_loss,
                "allocation": s.allocation,
                "arm_probabilities": s.arm_probabilities,
            }
            for s in r.segments
        ],
        "cells": [
            {
                "cell": c.cell,
                "n": c.n,
                "mean_outcome": c.mean_outcome,
                "empirical_lift": c.empirical_lift,
                "model_lift": c.model_lift,
                "model_lower": c.model_lower,
                "model_upper": c.model_upper,
            }
            for c in r.cells
        ],
        "active_arms": list(r.active_arms),
        "dropped": list(r.dropped),
        "graduations": [
            {
                "segment": g.segment,
                "arm": g.arm,
                "rounds": g.rounds,
                "prob_positive": g.prob_positive,
                "expected_loss": g.expected_loss,
            }
            for g in r.graduations
        ],
        # the round's decisions (one per scope), so a report written after a reload still shows them
        "recommendations": None if r.recommendations is None else r.recommendations.to_dict("records"),
        "seconds": r.seconds,
        "churn": r.churn,
        "resegment_probability": r.resegment_probability,
        "segments_established": r.segments_established,
        "churn_top_arm": r.churn_top_arm,
        "held_arms": list(r.held_arms),
        "calibrated_allocation": r.calibrated_allocation,
        "allocation_step": r.allocation_step,
        "segment_change": r.segment_change,
    }


def _result_from_json(d: Mapping[str, Any], plan: Plan) -> RoundResult:
    return RoundResult(
        round=int(d["round"]),
        n_round=int(d["n_round"]),
        n_total=int(d["n_total"]),
        lifts=tuple(Lift(**x) for x in d["lifts"]),
        ipw_arm_means=dict(d["ipw_arm_means"]),
        segments=tuple(
            SegmentResult(
                id=s["id"],
                description=s["description"],
                rule=_rule_from_json(s["rule"]),
                share=s["share"],
                best_arm=s["best_arm"],
                arm_best_probabilities=dict(s["arm_best_probabilities"]),
                lifts=tuple(Lift(**x) for x in s["lifts"]),
                expected_loss=dict(s["expected_loss"]),
                allocation=dict(s["allocation"]),
                arm_probabilities=dict(s["arm_probabilities"]),
            )
            for s in d["segments"]
        ),
        cells=tuple(CellObservation(**c) for c in d["cells"]),
        active_arms=tuple(d["active_arms"]),
        dropped=tuple(d["dropped"]),
        graduations=tuple(Graduation(**g) for g in d["graduations"]),
        plan=plan,
        recommendations=None if d.get("recommendations") is None else pd.DataFrame(d["recommendations"]),
        seconds=dict(d.get("seconds", {})),
        churn=d.get("churn"),
        resegment_probability=d.get("resegment_probability"),
        segments_established=bool(d.get("segments_established", False)),
        churn_top_arm=d.get("churn_top_arm"),
        held_arms=tuple(d.get("held_arms", ())),
        calibrated_allocation=bool(d.get("calibrated_allocation", False)),
        allocation_step=float(d.get("allocation_step", 1.0)),
        segment_change=str(d.get("segment_change", "")),
    )


# --- the experiment -------------------------------------------------------------------------------------
def state_to_json(arms: tuple[str, ...], settings: Mapping[str, Any], state: ExperimentState) -> dict[str, Any]:
    """An experiment's arms, settings (its constructor keywords) and committed state as a JSON-ready dict."""
    doc = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "arms": list(arms),
        "salt": experiment_salt(settings["key"]),
        "settings": dict(settings),
        "state": {
            "round": state.round,
            "active_arms": list(state.active_arms),
            "loser_streak": dict(state.loser_streak),
            "winner_streak": [[seg, arm, n] for (seg, arm), n in state.winner_streak.items()],
            "plans": [plan_to_json(p) for p in state.plans],
            "results": [_result_to_json(r) for r in state.results],
            "data": None if state.data is None else frame_to_json(state.data),
            "warm_start": None if state.warm_start is None else state.warm_start.to_json(),
        },
    }
    return _plain(doc, "experiment state")


def state_from_json(doc: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any], ExperimentState]:
    """(arms, settings, state) from :func:`state_to_json`'s dict; ValueError for anything inconsistent.

    The state's posterior and tree are None: the next round refits them.
    """
    try:
        return _state_from_json(doc)
    except (KeyError, TypeError, IndexError, AttributeError) as err:  # a part missing or of the wrong type
        raise ValueError(f"malformed experiment state ({type(err).__name__}: {err}); it was not written by "
                         "this Sortition, or was edited") from None


def _state_from_json(doc: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any], ExperimentState]:
    if not isinstance(doc, Mapping) or doc.get("format") != STATE_FORMAT:
        found = doc.get("format") if isinstance(doc, Mapping) else type(doc).__name__
        raise ValueError(f"not a Sortition experiment state (format {found!r}, expected {STATE_FORMAT!r})")
    version = doc.get("version")
    if version not in _READS:
        raise ValueError(
            f"experiment state format version {version!r} is not supported: this Sortition reads version "
            f"{STATE_VERSION}; use the Sortition release that wrote it (or a newer one that migrates it)"
        )
    settings = dict(doc["settings"])
    key = settings.get("key")
    if doc.get("salt") != experiment_salt(key):
        raise ValueError(
            f"the saved salt {doc.get('salt')!r} does not match the key {key!r} "
            f"(expected {experiment_salt(key)!r}); the state file was edited by hand"
        )
    s = doc["state"]
    plans = tuple(plan_from_json(p) for p in s["plans"])
    results = tuple(_result_from_json(r, plans[i + 1]) for i, r in enumerate(s["results"]))
    if len(plans) != len(results) + 1 or int(s["round"]) != len(results):
        raise ValueError(
            f"inconsistent experiment state: round {s['round']}, {len(results)} results, {len(plans)} plans"
        )
    data = None if s["data"] is None else frame_from_json(s["data"])
    _check_counts(data, results)
    state = ExperimentState(
        round=int(s["round"]),
        data=data,
        plan=plans[-1],
        active_arms=tuple(s["active_arms"]),
        results=results,
        plans=plans,
        loser_streak={str(k): int(v) for k, v in s["loser_streak"].items()},
        winner_streak={(seg, arm): int(n) for seg, arm, n in s["winner_streak"]},
        warm_start=None if s.get("warm_start") is None else WarmStart.from_json(s["warm_start"]),
    )
    return tuple(doc["arms"]), settings, state


def _check_counts(data: pd.DataFrame | None, results: tuple[RoundResult, ...]) -> None:
    """Every round's row counts must add up to the rows saved; ValueError naming the first that does not."""
    n = 0 if data is None else len(data)
    total = 0
    for r in results:
        total += r.n_round
        if r.n_total != total:
            raise ValueError(f"inconsistent experiment state: round {r.round} says {r.n_total} rows in total, "
                             f"its rounds add up to {total}")
    if results and total != n:
        raise ValueError(f"inconsistent experiment state: the rounds read {total} rows but the saved data "
                         f"has {n}")


def _checksum(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the document's canonical JSON (sorted keys, no spaces), ``checksum`` left out."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _verify(doc: Any, path: Path) -> None:
    if not isinstance(doc, dict):
        return  # state_from_json says what it is
    given = doc.get("checksum")
    if given is None:
        if doc.get("version") == 1:
            return  # written before states carried checksums
        raise ValueError(f"experiment state {str(path)!r} has no checksum: it was not written by Sortition "
                         f"or was edited; restore {str(_backup(path))!r} (the previous good state)")
    if given != _checksum(doc):
        raise ValueError(
            f"experiment state {str(path)!r} fails its checksum: its content changed after Sortition wrote "
            f"it (a hand edit or a damaged disk). Nothing was run. Restore {str(_backup(path))!r} (the "
            "state before the last round, whose exposures the next run then reads again) or the file "
            "from your own backup"
        )


def _backup(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def _remove_stale_temporaries(path: Path) -> None:
    """Temp files of writes killed before their rename (SIGKILL skips the cleanup below)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def write_state(doc: Mapping[str, Any], path: str | Path) -> Path:
    """Write a state document to ``path`` atomically (temp file in the same folder + rename), with its
    checksum, keeping the file it replaces as ``<name>.prev``."""
    path = Path(path)
    doc = {**doc, "checksum": _checksum(doc)}
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private; keep the mode of the file it replaces (0644 for a new one)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            prev_tmp = f"{tmp}.prev.tmp"  # same stale-temporary pattern: removed by the next write
            shutil.copy2(path, prev_tmp)
            os.replace(prev_tmp, _backup(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        Path(f"{tmp}.prev.tmp").unlink(missing_ok=True)
        raise
    return path


def read_state(path: str | Path) -> dict[str, Any]:
    """The state document written by :func:`write_state`; ValueError for a missing or non-JSON file."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"experiment state {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
    except UnicodeDecodeError as err:
        raise ValueError(not_text_message(path, "experiment state", *decode_error_place(err),
                                          fix=f"restore {str(_backup(path))!r}")) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"experiment state {str(path)!r} is not valid JSON: {err}; restore "
                         f"{str(_backup(path))!r}") from None
    except RecursionError:
        raise ValueError(f"experiment state {str(path)!r} is nested too deeply to be a Sortition state "
                         f"(a damaged or foreign file); restore {str(_backup(path))!r}") from None
    if isinstance(raw, dict) and raw.get("format") == STATE_FORMAT and raw.get("version") in _READS:
        _verify(raw, path)
    return json.loads(text, object_hook=_unfloat)
