"""Interval calibration: measured coverage of credible intervals, and the monotone correction it implies.

A calibration sweep (``sortition calibrate``, :mod:`sortition.workflows.calibrate`) fits posteriors on
simulated experiments with known truth and measures, for each interval kind ("visitor": per-visitor
CATE intervals, "segment": segment-average effects, "average": the average effect), the share of
true effects inside the equal-tailed interval at each nominal level of ``LEVELS``. Pooled over the
sweep and made monotone (pool-adjacent-violators), that curve c(level) is the actual coverage of a
nominal level; there is one per assignment design too (adaptive data cover less, ``DESIGNS``), and
the segment-level and average-effect curves are one, fitted on both kinds' measurements (``POOLED``:
an average effect is the segment "everyone"). The correction is its inverse: to report a nominal L
interval, use the level L' with c(L') = L (linear interpolation between grid points; clipped to the
grid; by default never below L, see ``Calibration.narrow``). The P(best arm) reliability curve
(posterior win probability against the frequency the arm was truly best) is kept with the artifact,
as a monotone map; Thompson allocation applies it (``sortition.policy.allocation.allocation_weights``).

The artifact is a versioned JSON file (``FORMAT``); ``fit(..., calibration=PATH)`` attaches it to the
Posterior, whose intervals (``cate_interval``, ``lift_summary``, and the loop's lifts through
``Posterior.interval_level``) then use the corrected levels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sortition.userfiles import read_json

FORMAT = "sortition.calibration"
VERSION = 1
KINDS = ("visitor", "segment", "average")
LEVELS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
P_BEST_BINS = 10
# the measurements each kind's curve is fitted on. An average effect is the segment "everyone": an
# experiment has K-1 of them against ~7 (K-1) segment effects, too few for a curve of its own, so the
# segment-level curve pools both (and the average uses it).
POOLED = {"visitor": ("visitor",), "segment": ("segment", "average"), "average": ("segment", "average")}
# adaptive (loop-collected) data cover less than uniform at the same nominal level, on every scenario
# measured: each kind also gets a curve per assignment design ("segment@adaptive"), used for data of
# that design (assignment_design); the pooled curve serves a posterior without data
DESIGNS = ("uniform", "adaptive")


def assignment_design(propensity: np.ndarray | None, arm_index: np.ndarray) -> str:
    """"adaptive" when an arm's recorded propensities vary across rows (assignment changed over rounds or
    segments), else "uniform" (one fixed split, or none recorded)."""
    if propensity is None:
        return "uniform"
    propensity, arm_index = np.asarray(propensity, dtype=np.float64), np.asarray(arm_index)
    for k in np.unique(arm_index):
        p = propensity[arm_index == k]
        if p.max() - p.min() > 1e-9:
            return "adaptive"
    return "uniform"


def isotonic(y: Sequence[float], w: Sequence[float] | None = None) -> np.ndarray:
    """Non-decreasing least-squares fit to ``y`` with weights ``w`` (pool adjacent violators)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64)
    values, weights, sizes = [], [], []
    for yi, wi in zip(y, w, strict=True):
        values.append(yi)
        weights.append(wi)
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            wt = weights[-2] + weights[-1]
            merged = (values[-2] * weights[-2] + values[-1] * weights[-1]) / wt if wt > 0 else values[-1]
            values[-2:], weights[-2:], sizes[-2:] = [merged], [wt], [sizes[-2] + sizes[-1]]
    return np.repeat(values, sizes)


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration: monotone coverage curves per interval kind and the P(best) reliability.

    Attributes:
        levels: the nominal levels measured (``LEVELS``).
        coverage: per kind, the monotone actual coverage at each nominal level.
        p_best: (bin mean P(best), observed frequency of truly best), monotone, ``P_BEST_BINS`` bins.
        n_experiments: simulated experiments pooled.
        meta: what was swept (scenarios, sizes, outcomes, adaptive or uniform data, engine).
        narrow: whether the correction may narrow intervals that over-cover in the sweep. False (the
            default): it only widens, never computing an interval below its nominal level. Narrowing
            learned on the sweep's worlds under-covered on scenarios held out of it (docs/calibration.md).
    """

    levels: tuple[float, ...]
    coverage: Mapping[str, tuple[float, ...]]
    p_best: tuple[tuple[float, ...], tuple[float, ...]]
    n_experiments: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    narrow: bool = False

    def level(self, kind: str, nominal: float, design: str | None = None) -> float:
        """The level to compute so that a ``kind`` interval covers ``nominal`` of true effects, on data of
        ``design`` ("uniform" or "adaptive": its own curve when the artifact has one, else the pooled)."""
        if kind not in self.coverage:
            raise ValueError(f"interval kind {kind!r} is not calibrated; kinds: {sorted(self.coverage)}")
        if design is not None and f"{kind}@{design}" in self.coverage:
            kind = f"{kind}@{design}"
        curve = np.maximum.accumulate(np.asarray(self.coverage[kind], dtype=np.float64))
        levels = np.asarray(self.levels)
        # strictly increasing x for the inverse: flat stretches keep their first (smallest) level
        keep = np.concatenate([[True], np.diff(curve) > 0])
        corrected = float(np.clip(np.interp(nominal, curve[keep], levels[keep]), levels[0], levels[-1]))
        return corrected if self.narrow else max(float(nominal), corrected)

    def best_probability(self, p: np.ndarray) -> np.ndarray:
        """P(best arm) mapped through the reliability curve (monotone; allocation renormalizes it)."""
        x, y = (np.asarray(a, dtype=np.float64) for a in self.p_best)
        return np.interp(np.asarray(p, dtype=np.float64), x, y) if x.size else np.asarray(p, dtype=np.float64)

    # --- the artifact --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "levels": list(self.levels),
                "coverage": {k: list(v) for k, v in self.coverage.items()},
                "p_best": [list(self.p_best[0]), list(self.p_best[1])], "n_experiments": self.n_experiments,
                "meta": dict(self.meta), "narrow": self.narrow}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Calibration:
        if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, Mapping) else type(doc).__name__
            raise ValueError(f"not a Sortition calibration (format {found!r}, expected {FORMAT!r})")
        if doc.get("version") != VERSION:
            raise ValueError(f"calibration version {doc.get('version')!r} is not supported (this Sortition reads "
                             f"version {VERSION}); rerun `sortition calibrate`")
        levels = tuple(float(v) for v in doc["levels"])
        coverage = {str(k): tuple(float(x) for x in v) for k, v in doc["coverage"].items()}
        bad = [k for k, v in coverage.items() if len(v) != len(levels)]
        if bad:
            raise ValueError(f"calibration coverage of {bad} does not have one value per level ({len(levels)})")
        x, y = doc["p_best"]
        return cls(levels, coverage, (tuple(map(float, x)), tuple(map(float, y))), int(doc["n_experiments"]),
                   dict(doc.get("meta", {})), bool(doc.get("narrow", False)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(path)  # nothing half-written
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"calibration file {str(path)!r} does not exist; write one with `sortition calibrate`")
        return cls.from_json(read_json(path, "calibration file"))


def as_calibration(value: Calibration | str | Path | None) -> Calibration | None:
    """A Calibration from itself, a path to its JSON artifact, or None."""
    if value is None or isinstance(value, Calibration):
        return value
    if isinstance(value, (str, Path)):
        return Calibration.load(value)
    raise TypeError(f"calibration must be a Calibration, a path to its JSON file, or None; got {type(value).__name__}")


def coverage_at_levels(draws: np.ndarray, truth: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Share of ``truth`` (m,) inside the equal-tailed intervals of ``draws`` (m, S), per level: (L,)."""
    out = np.empty(len(levels))
    for i, level in enumerate(levels):
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
        out[i] = float(np.mean((lo <= truth) & (truth <= hi)))
    return out


def fit_calibration(results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None,
                    narrow: bool = False) -> Calibration:
    """Pool per-experiment measurements (:func:`sortition.workflows.calibrate.measure`'s dicts:
    ``coverage`` {kind: (L,)}, ``weights`` {kind: count}, ``p_best`` [[p, hit], ...], and ``design``
    "uniform"/"adaptive" where known) into a Calibration: per kind a pooled curve, and one per design
    present (``"segment@adaptive"``)."""
    if not results:
        raise ValueError("no sweep results to fit a calibration from; run the sweep first")
    coverage = {}
    groups = [(None, results)] + [(d, [r for r in results if r.get("design") == d]) for d in DESIGNS]
    for kind in KINDS:
        if not any(kind in r["coverage"] for r in results):
            continue
        for design, subset in groups:
            rows = [(np.asarray(r["coverage"][part]), float(r["weights"][part])) for r in subset
                    for part in POOLED[kind] if part in r["coverage"] and r["weights"].get(part, 0) > 0]
            if rows:
                w = np.array([wt for _, wt in rows])
                curve = np.average(np.stack([c for c, _ in rows]), axis=0, weights=w)
                coverage[kind if design is None else f"{kind}@{design}"] = tuple(float(v) for v in isotonic(curve))
    pairs = np.array([pair for r in results for pair in r.get("p_best", [])], dtype=np.float64).reshape(-1, 2)
    if len(pairs):
        edges = np.linspace(0.0, 1.0, P_BEST_BINS + 1)
        which = np.clip(np.searchsorted(edges, pairs[:, 0], side="right") - 1, 0, P_BEST_BINS - 1)
        seen = [b for b in range(P_BEST_BINS) if (which == b).any()]
        x = [float(pairs[which == b, 0].mean()) for b in seen]
        y = isotonic([pairs[which == b, 1].mean() for b in seen], [(which == b).sum() for b in seen])
        p_best = (tuple(x), tuple(float(v) for v in y))
    else:
        p_best = ((), ())
    meta = {**(meta or {}), "pooled": {k: list(v) for k, v in POOLED.items() if k in coverage}}
    return Calibration(LEVELS, coverage, p_best, len(results), meta, bool(narrow))
