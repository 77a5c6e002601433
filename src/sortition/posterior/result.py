"""Posterior: draws of the K-1 contrasts (arm k minus control) for every visitor."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sortition import display
from sortition.data import OUTCOME_KINDS, ExperimentData
from sortition.posterior.calibration import Calibration, assignment_design
from sortition.posterior.warm import WarmStart

CHUNK_ELEMENTS = 4_000_000  # float64 scratch per chunk: ~32 MB, whatever n and S are
_FORMAT = "sortition.posterior/1"


@dataclass(frozen=True)
class ArmLift:
    """Average effect of one arm versus control, over the analysed visitors."""

    arm: object
    mean: float
    lower: float
    upper: float
    prob_positive: float
    relative_mean: float | None = None  # mean lift / control mean, when the control level is known
    relative_lower: float | None = None
    relative_upper: float | None = None


class LiftSummary(tuple):
    """A tuple of :class:`ArmLift` (one per treatment) that a notebook shows as a table."""

    def to_frame(self) -> pd.DataFrame:
        """One row per treatment arm: the fields of :class:`ArmLift`."""
        return pd.DataFrame([vars(x) for x in self], columns=list(ArmLift.__dataclass_fields__))

    def _repr_html_(self) -> str:
        rows = [[x.arm, display.interval(x.mean, x.lower, x.upper), display.probability(x.prob_positive),
                 "-" if x.relative_mean is None else display.percent(x.relative_mean, 1, sign=True)]
                for x in self]
        return display.table(["arm", "lift vs control [interval]", "P(lift > 0)", "relative lift"], rows)


def summarize_lifts(arms: Sequence, mean_contrasts: np.ndarray, level: float = 0.9) -> LiftSummary:
    """Per treatment arm (``arms[1:]``): mean, equal-tailed credible interval and P(lift > 0).

    The one lift summary: ``mean_contrasts`` (S, K-1) are draws of an average effect (all visitors or a
    segment), in the metric's units.
    """
    _check_level(level)
    m = np.asarray(mean_contrasts, dtype=np.float64)
    lower, upper = np.quantile(m, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return LiftSummary(ArmLift(arm, float(m[:, j].mean()), float(lower[j]), float(upper[j]),
                               float((m[:, j] > 0).mean())) for j, arm in enumerate(arms[1:]))


@dataclass(frozen=True, eq=False)
class Posterior:
    """Posterior draws of per-visitor contrasts, shape (n visitors, S draws, K-1), float32, metric units.

    Build with :func:`sortition.posterior.fit` or :meth:`from_draws`. ``components`` holds extra draws of
    the same shape (the revenue model's ``conversion`` and ``severity`` contrasts); ``baseline`` holds
    (S,) draws of the control arm's mean outcome over the visitors, when the engine knows it.
    ``warm_start`` (BCF fits) is the last draw of the fit's forests, for ``fit(..., warm_start=...)`` next round.
    ``calibration`` (from ``fit(..., calibration=PATH)``) corrects the levels of every credible interval.

    Grouped form: when visitors share their draws (the stratified engine: one set per stratum), the
    draws are kept once per group, shape (G, S, K-1), with ``rows`` (n,) the group of each visitor. Every
    reduction then works on the G groups weighted by their counts, so memory is O(G S K + n), never
    O(n S K); :meth:`contrast_draws` alone expands them to (n, S, K-1).
    """

    arms: tuple
    outcome_kind: str
    _draws: np.ndarray = field(repr=False)
    data: ExperimentData | None = field(default=None, repr=False)
    components: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    baseline: np.ndarray | None = field(default=None, repr=False)
    info: Mapping = field(default_factory=dict)
    warm_start: WarmStart | None = field(default=None, repr=False)
    rows: np.ndarray | None = field(default=None, repr=False)  # (n,) group of each visitor (grouped form)
    calibration: Calibration | None = field(default=None, repr=False)
    # one-step residuals per key ("contrast", then components): (n, S) float32, see :meth:`average_effects`
    residuals: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    # everyone's average-effect draws per component, computed once: a round reads them for its lifts and
    # its overall decision, and each call is a pass of n x S bootstrap weights (2 s at 1,000,000 visitors)
    _averages: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        d = self._draws
        if d.ndim != 3 or d.shape[2] != len(self.arms) - 1:
            raise ValueError(f"contrast draws must have shape (n, S, K-1={len(self.arms) - 1}), got {d.shape}.")
        r = self.rows
        if r is not None and (r.ndim != 1 or (r.size and (r.min() < 0 or r.max() >= d.shape[0]))):
            raise ValueError(f"rows must be (n,) group indices into the {d.shape[0]} groups of draws.")
        if self.outcome_kind not in OUTCOME_KINDS:
            raise ValueError(f"outcome={self.outcome_kind!r} is not a known kind; use one of {OUTCOME_KINDS}.")
        if self.data is not None and self.data.n != self.n:
            raise ValueError(f"draws cover {self.n} visitors but data has {self.data.n} rows.")
        if self.data is not None and tuple(self.data.arms) != tuple(self.arms):
            raise ValueError(f"arms {self.arms} differ from the data's arms {self.data.arms}.")
        for key, e in self.residuals.items():
            if self.data is None or self.rows is not None or e.shape != (self.n, self.n_draws):
                raise ValueError(f"residuals {key!r} need the data and per-visitor draws: shape (n={self.n}, "
                                 f"S={self.n_draws}), got {e.shape}{' without data' if self.data is None else ''}.")

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_draws(cls, contrasts: np.ndarray, data: ExperimentData | None = None, arms: Sequence | None = None,
                   outcome: str = "continuous", *, components: Mapping[str, np.ndarray] | None = None,
                   baseline: np.ndarray | None = None, info: Mapping | None = None,
                   warm_start: WarmStart | None = None, rows: np.ndarray | None = None,
                   calibration: Calibration | None = None,
                   residuals: Mapping[str, np.ndarray] | None = None) -> Posterior:
        """Wrap an (n, S, K-1) array of contrast draws (copied once to float32, then read-only).

        ``arms`` defaults to the data's arms, or to ``("arm0", ..., "arm{K-1}")`` without data.
        ``rows`` (n,) ints: the grouped form, ``contrasts`` (G, S, K-1) then holds one set per group.
        ``residuals``: per key ("contrast", or a component's name) the (n, S) one-step residuals of
        :meth:`average_effects` (needs ``data``); without them average effects are the plug-in means.
        """
        c = np.asarray(contrasts)
        if c.ndim != 3:
            raise ValueError(f"contrasts must be a 3-d array (n visitors, S draws, K-1 contrasts); got shape {c.shape}.")
        if arms is None:
            arms = data.arms if data is not None else tuple(f"arm{k}" for k in range(c.shape[2] + 1))
        arms = tuple(arms)
        if data is not None and tuple(data.arms) != arms:
            raise ValueError(f"arms={arms} differ from the data's arms {data.arms}; leave arms=None to use the data's.")
        if not np.isfinite(c).all():
            raise ValueError("contrast draws contain NaN or infinite values.")
        comps = {k: _frozen32(val) for k, val in (components or {}).items()}
        for k, val in comps.items():
            if val.shape != c.shape:
                raise ValueError(f"component {k!r} has shape {val.shape}, expected {c.shape}.")
        base = None if baseline is None else _frozen32(np.asarray(baseline).reshape(-1))
        groups = None
        if rows is not None:
            groups = np.array(rows, dtype=np.int64, copy=True)
            groups.flags.writeable = False
        res = {str(k): _frozen32(val) for k, val in (residuals or {}).items()}
        return cls(arms, outcome, _frozen32(c), data, comps, base, dict(info or {}), warm_start, groups,
                   calibration, res)

    # --- shape ----------------------------------------------------------------------------------
    @property
    def control(self):
        return self.arms[0]

    @property
    def n(self) -> int:
        return int(self._draws.shape[0] if self.rows is None else self.rows.shape[0])

    @property
    def n_draws(self) -> int:
        return int(self._draws.shape[1])

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    def contrast_draws(self, component: str | None = None) -> np.ndarray:
        """(n, S, K-1) float32 read-only view of the draws (``component``: e.g. 'conversion').

        In the grouped form this expands the draws to every visitor (n S (K-1) floats): the
        reductions below never need it."""
        draws = self._groups(component)
        if self.rows is None:
            return draws
        out = draws[self.rows]
        out.flags.writeable = False
        return out

    def _groups(self, component: str | None) -> np.ndarray:
        """The stored draws: (n, S, K-1), or (G, S, K-1) in the grouped form."""
        return self._draws if component is None else self.components[component]

    # --- chunked reductions ------------------------------------------------------------------------
    def _row_chunk(self) -> int:
        return max(1, CHUNK_ELEMENTS // max(1, self.n_draws * (self.n_arms - 1)))

    def segment_mean_contrasts(self, mask: np.ndarray, component: str | None = None) -> np.ndarray:
        """(S, K-1) float64: per draw, the mean contrast over the visitors where ``mask`` (n,) is true."""
        mask = np.asarray(mask)
        if mask.shape != (self.n,) or mask.dtype != bool:
            raise ValueError(f"mask must be a boolean array of shape ({self.n},), got {mask.dtype} {mask.shape}.")
        return self.segments_mean_contrasts(mask[None, :], component)[0]

    def segments_mean_contrasts(self, masks: np.ndarray, component: str | None = None) -> np.ndarray:
        """(G, S, K-1) float64: per segment and draw, the mean contrast over the segment's visitors.

        ``masks`` (G, n) bool. One pass over the draws in blocks of contiguous rows (views, never a
        copy of the draws); each segment's rows of a block are summed in float32 (pairwise), block sums accumulate in
        float64, so scratch memory is one block whatever n and G are.
        """
        masks = np.asarray(masks)
        if masks.ndim != 2 or masks.shape[1] != self.n or masks.dtype != bool:
            raise ValueError(f"masks must be a boolean array of shape (G, n={self.n}), got {masks.dtype} {masks.shape}.")
        counts = masks.sum(axis=1)
        if (counts == 0).any():
            raise ValueError(f"masks {np.flatnonzero(counts == 0).tolist()} select no visitors; "
                             "a segment mean over zero visitors is undefined.")
        if self.rows is not None:  # per segment, its visitors' count in each group weights the groups
            draws = self._groups(component)
            n_groups, n_draws, k1 = draws.shape
            weights = np.stack([np.bincount(self.rows[m], minlength=n_groups) for m in masks]).astype(np.float64)
            total = weights @ draws.reshape(n_groups, n_draws * k1).astype(np.float64)
            return (total / counts[:, None]).reshape(masks.shape[0], n_draws, k1)
        draws = self.contrast_draws(component)
        n, n_draws, k1 = draws.shape
        flat = draws.reshape(n, n_draws * k1)  # a view: the draws are C-contiguous
        total = np.zeros((masks.shape[0], n_draws * k1))
        step = self._row_chunk()
        for start in range(0, n, step):
            block = flat[start:start + step]
            for g, mask in enumerate(masks[:, start:start + step]):
                total[g] += np.compress(mask, block, axis=0).sum(axis=0)  # float32 within a block
        return (total / counts[:, None]).reshape(masks.shape[0], n_draws, k1)

    def mean_contrasts(self, component: str | None = None) -> np.ndarray:
        """(S, K-1) draws of the average effect over all visitors."""
        return self.segment_mean_contrasts(np.ones(self.n, dtype=bool), component)

    def average_effects(self, mask: np.ndarray | None = None, component: str | None = None) -> np.ndarray:
        """(S, K-1) float64 draws of the average effect over the visitors (all, or where ``mask`` (n,) is
        true): the one-step (doubly robust, AIPW) estimate of the mean of their contrasts.

        Per draw d and contrast k (arm k minus control), over the m visitors i:
            mean_i tau_dk(x_i) + sum_i w_di (1[W_i = k] - 1[W_i = 0]) e_di,
        with e_di = (y_i - m_d(x_i, W_i)) / p_i the residual of the row's outcome from the draw's mean for
        the arm it received, over that arm's probability (``residuals``; recorded propensities are the
        assignment probabilities given the history, so the term has mean zero under adaptive designs too),
        and w_d ~ Dirichlet(1, ..., 1) over the m visitors (a Bayesian bootstrap of the residual term
        only: the truth scored is the mean of the true effects of these visitors, not of a population).
        The correction removes the model's bias where the model's fit is off (few control rows);
        the bootstrap adds the sampling spread of the rows' noise. Weights come from ``info["seed"]``, so
        the same posterior gives the same draws. Without residuals (the stratified engine, whose
        per-stratum arm means are already the data's; ``from_draws`` without them) this is
        :meth:`segment_mean_contrasts`. Everyone's draws (``mask`` None) are computed once and returned
        read-only.
        """
        if mask is None:
            key = component or "contrast"
            if key not in self._averages:
                draws = self._average_effects(np.ones(self.n, dtype=bool), component)
                draws.setflags(write=False)
                self._averages[key] = draws
            return self._averages[key]
        return self._average_effects(np.asarray(mask), component)

    def _average_effects(self, mask: np.ndarray, component: str | None) -> np.ndarray:
        """(S, K-1) :meth:`average_effects` over the visitors where ``mask`` (n,) is true."""
        plug = self.segment_mean_contrasts(mask, component)
        e = self.residuals.get(component or "contrast")
        if e is None:
            return plug
        rows = np.flatnonzero(mask)
        arm = self.data.arm_index[rows]
        sign = (arm[:, None] == np.arange(1, self.n_arms)[None, :]).astype(np.float64) - (arm == 0)[:, None]
        rng = np.random.default_rng([int(self.info.get("seed", 0)), 0xA1B2])
        num = np.zeros((self.n_draws, self.n_arms - 1))
        den = np.zeros(self.n_draws)
        step = max(1, CHUNK_ELEMENTS // (2 * self.n_draws))
        for s in range(0, rows.size, step):  # bounded scratch: one block of weights at a time
            g = rng.standard_exponential((min(step, rows.size - s), self.n_draws))  # Dirichlet, unnormalized
            num += (g * e[rows[s:s + step]]).T @ sign[s:s + step]
            den += g.sum(axis=0)
        return plug + num / den[:, None]

    def cate(self, component: str | None = None) -> np.ndarray:
        """(n, K-1) posterior mean contrast per visitor."""
        if self.rows is not None:
            return self._groups(component).mean(axis=1, dtype=np.float64)[self.rows]
        draws = self.contrast_draws(component)
        out = np.empty((self.n, draws.shape[2]))
        step = self._row_chunk()
        for s in range(0, self.n, step):
            out[s:s + step] = draws[s:s + step].mean(axis=1, dtype=np.float64)
        return out

    def interval_level(self, kind: str, level: float) -> float:
        """The level an interval of ``kind`` ("visitor", "segment", "average") is computed at to cover
        ``level``: the calibrated one when a calibration is attached, else ``level`` itself."""
        _check_level(level)
        if self.calibration is None:
            return level
        design = None if self.data is None else assignment_design(self.data.propensity, self.data.arm_index)
        return self.calibration.level(kind, level, design)

    def cate_interval(self, level: float = 0.9, component: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed per-visitor credible interval: (lower, upper), each (n, K-1) (calibrated when a
        calibration is attached)."""
        level = self.interval_level("visitor", level)
        q = [(1 - level) / 2, (1 + level) / 2]
        if self.rows is not None:
            lo, hi = np.quantile(self._groups(component), q, axis=1)
            return lo[self.rows], hi[self.rows]
        draws = self.contrast_draws(component)
        lo = np.empty((self.n, draws.shape[2]))
        hi = np.empty_like(lo)
        step = self._row_chunk()
        for s in range(0, self.n, step):
            lo[s:s + step], hi[s:s + step] = np.quantile(draws[s:s + step], q, axis=1)
        return lo, hi

    def lift_summary(self, level: float = 0.9, mask: np.ndarray | None = None) -> LiftSummary:
        """Per treatment arm: mean average effect vs control, credible interval, P(lift > 0).

        Relative lift (effect / control mean) is included when the control mean's draws are known
        (``baseline``) and ``mask`` is None.
        """
        m = self.average_effects() if mask is None else self.segment_mean_contrasts(mask)
        level = self.interval_level("average" if mask is None else "segment", level)
        lifts = summarize_lifts(self.arms, m, level)
        if self.baseline is None or mask is not None or not np.all(self.baseline > 0):
            return lifts
        rel = summarize_lifts(self.arms, m / self.baseline[:, None], level)
        return LiftSummary(replace(a, relative_mean=r.mean, relative_lower=r.lower, relative_upper=r.upper)
                           for a, r in zip(lifts, rel, strict=True))

    def lift_frame(self, level: float = 0.9) -> pd.DataFrame:
        """:meth:`lift_summary` as a DataFrame, one row per treatment arm (``lift_summary().to_frame()``)."""
        return self.lift_summary(level).to_frame()

    def _repr_html_(self) -> str:
        head = (f"<p><b>Posterior</b>: {self.n:,} visitors x {self.n_draws:,} draws, arms "
                f"{display.escape(', '.join(map(str, self.arms)))} (control first), outcome "
                f"{display.escape(self.outcome_kind)}</p>")
        return head + self.lift_summary()._repr_html_()

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` file (no pickle): draws, components, baseline, metadata JSON and the data
        (as Parquet bytes) when attached."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        meta = {"format": _FORMAT, "arms": list(_jsonable(a) for a in self.arms), "outcome_kind": self.outcome_kind,
                "components": list(self.components), "info": _jsonable(dict(self.info))}
        arrays = {"draws": self._draws}
        for k, val in self.components.items():
            arrays[f"component__{k}"] = val
        if self.baseline is not None:
            arrays["baseline"] = self.baseline
        if self.rows is not None:
            arrays["rows"] = self.rows
        for k, val in self.residuals.items():
            arrays[f"residual__{k}"] = val
        meta["residuals"] = list(self.residuals)
        if self.data is not None:
            buf = io.BytesIO()
            frame = self.data.frame()
            frame.columns = [str(c) for c in frame.columns]
            frame.to_parquet(buf, index=False)
            arrays["data_parquet"] = np.frombuffer(buf.getvalue(), dtype=np.uint8)
            meta["data"] = {"columns": self.data.columns, "covariates": [str(c) for c in self.data.covariate_names],
                            "arms": meta["arms"]}
        arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)  # nothing half-written
        return path

    @classmethod
    def load(cls, path: str | Path) -> Posterior:
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta_json"]).decode())
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a Sortition posterior file (format {meta.get('format')!r}).")
            draws = z["draws"]
            comps = {k: z[f"component__{k}"] for k in meta["components"]}
            base = z["baseline"] if "baseline" in z.files else None
            rows = z["rows"] if "rows" in z.files else None
            residuals = {k: z[f"residual__{k}"] for k in meta.get("residuals", [])}
            data = None
            if "data" in meta:
                frame = pd.read_parquet(io.BytesIO(bytes(z["data_parquet"])))
                d = meta["data"]
                roles = {k: c for k, c in d["columns"].items() if k != "subject" or c}
                data = ExperimentData.from_frame(frame, arms=d["arms"], covariates=d["covariates"], **roles)
        arms = tuple(meta["arms"])
        return cls.from_draws(draws, data=data, arms=arms, outcome=meta["outcome_kind"], components=comps,
                              baseline=base, info=meta["info"], rows=rows, residuals=residuals)


def _frozen32(a) -> np.ndarray:
    out = np.array(a, dtype=np.float32, copy=True, order="C")
    out.flags.writeable = False
    return out


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x
