"""``fit_policy_tree``: the few readable segments that maximize posterior expected welfare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from sortition import display
from sortition.policy.allocation import require_posterior, segment_masks
from sortition.policy.arms import best_arms
from sortition.policy.features import encode_features
from sortition.policy.search import Leaf, TreeSearch
from sortition.policy.segments import Segment
from sortition.policy.summary import SegmentSummary
from sortition.posterior import Posterior
from sortition.rules import Rule


@dataclass(frozen=True)
class PolicyTree:
    """A fitted policy tree: its leaves as segments, in tree order (left to right).

    Attributes:
        segments: the leaves; their rules partition the analysed visitors.
        arms: arm names, control first.
        welfare: posterior expected gain per visitor of serving each segment its ``best_arm``,
            relative to serving everyone control (metric units).
        max_depth, min_leaf_share: the fit's constraints.
        summary: the leaves' :class:`SegmentSummary` (plus the fit's ``extra_masks``), computed in the
            fit's one pass over the draws; hand it to ``thompson_allocation`` and ``recommend``.
    """

    segments: tuple[Segment, ...]
    arms: tuple
    welfare: float
    max_depth: int
    min_leaf_share: float
    summary: SegmentSummary | None = field(default=None, repr=False, compare=False)

    def assign(self, frame: Any) -> np.ndarray:
        """Segment id per row of a frame (or ExperimentData); -1 where no segment matches (e.g. a
        value missing where the tree saw none)."""
        out = None
        for seg in self.segments:
            mask = seg.rule.mask(frame)
            if out is None:
                out = np.full(mask.shape[0], -1, dtype=np.int64)
            out[(out < 0) & mask] = seg.id
        return out

    def _repr_html_(self) -> str:
        rows = [[seg.id, seg.rule.describe(), display.percent(seg.share, 1), seg.best_arm,
                 ", ".join(f"{a} {display.probability(p)}" for a, p in seg.arm_best_probabilities.items()),
                 display.probability(seg.stability)] for seg in self.segments]
        head = (f"<p><b>PolicyTree</b>: {len(self.segments)} segments, welfare "
                f"{display.signed(self.welfare)} per visitor vs control (depth <= {self.max_depth})</p>")
        return head + display.table(["id", "rule", "share", "best arm", "P(best)", "stability"], rows)

    def welfare_draws(self) -> np.ndarray:
        """(S,) per posterior draw, the gain per visitor of serving each leaf its ``best_arm`` vs serving
        everyone control: sum over leaves of share x the leaf's mean contrast of its best arm (0 for control).
        Needs ``summary``."""
        if self.summary is None:
            raise ValueError("this PolicyTree has no summary (built by hand); fit it with fit_policy_tree")
        out = np.zeros(self.summary.means.shape[1])
        for seg, means in zip(self.segments, self.summary.means, strict=True):
            best = self.arms.index(seg.best_arm)
            if best > 0:
                out += seg.share * means[:, best - 1]
        return out

    def describe(self) -> str:
        lines = []
        for seg in self.segments:
            probs = ", ".join(f"{a}: {p:.2f}" for a, p in seg.arm_best_probabilities.items())
            lines.append(
                f"[{seg.id}] {seg.rule.describe()}  share {seg.share:.1%}  best {seg.best_arm}  "
                f"P(best) {{{probs}}}  stability {seg.stability:.2f}"
            )
        return "\n".join(lines)


def fit_policy_tree(
    posterior: Posterior,
    max_depth: int = 2,
    min_leaf_share: float = 0.10,
    *,
    covariates: Sequence[str] | None = None,
    n_bins: int = 64,
    refine_bins: int = 512,
    n_bootstrap: int = 20,
    seed: int = 0,
    level: float = 0.9,
    max_rows: int | None = 100_000,
    extra_masks: Mapping[str, np.ndarray] | None = None,
) -> PolicyTree:
    """The tree of depth <= ``max_depth`` that maximizes posterior expected welfare.

    Welfare is the sum over leaves of the max over arms of the leaf's summed posterior-mean
    contrasts (control = 0). The search is exact for depth <= 2 over candidate thresholds from
    ``n_bins`` quantile bins of each numeric covariate and over categorical levels ordered by the
    leaf's mean reward; depth 3 picks each split by an exact depth-2 look-ahead. Missing values
    are routed explicitly (see :mod:`sortition.policy.features`), so every leaf is one rule.

    Args:
        posterior: a Posterior with observed data.
        max_depth: 1, 2 (default) or 3.
        min_leaf_share: every leaf holds at least this share of the visitors, in (0, 0.5].
        covariates: the columns to split on (default: all of ``posterior.data.covariates``).
        n_bins: quantile bins per numeric covariate for the search over all covariates.
        refine_bins: the search is then repeated over the covariates the tree uses only, with
            this many bins (a multiple of ``n_bins`` keeps the first tree's thresholds among the
            candidates, so the refined tree's welfare is never lower); ``refine_bins <= n_bins``
            skips it.
        n_bootstrap: bootstrap refits (Poisson(1) row weights) for each leaf's ``stability``;
            0 skips them (stability NaN).
        seed: seed of the bootstrap (and of the subsample).
        level: credible level of ``gate_interval``.
        max_rows: above this many visitors the search (and its bootstrap) runs on a uniform
            subsample of ``max_rows`` rows drawn with ``seed``, so its cost stops growing with n;
            each segment's share, lifts and P(best) are then computed on every visitor. None: all rows.
        extra_masks: named (n,) masks whose mean-contrast draws the returned ``summary`` also holds
            (``summary.extra``), read in the same pass over the draws as the leaves'.
    """
    data = require_posterior(posterior, "fit_policy_tree")
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or not 1 <= max_depth <= 3:
        raise ValueError(f"max_depth must be 1, 2 or 3, got {max_depth!r}")
    if not 0.0 < min_leaf_share <= 0.5:
        raise ValueError(f"min_leaf_share must be in (0, 0.5], got {min_leaf_share!r}")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 100):
        raise ValueError(f"max_rows must be an integer >= 100 or None, got {max_rows!r}")
    frame = _covariate_frame(data.covariates, covariates)
    cate = posterior.cate()  # (n, K-1) posterior means, chunked
    if max_rows is not None and len(frame) > max_rows:
        keep = np.sort(np.random.default_rng([seed, 1]).choice(len(frame), size=max_rows, replace=False))
        frame, cate = frame.iloc[keep].reset_index(drop=True), cate[keep]
    features = encode_features(frame, n_bins=n_bins)
    rewards = np.concatenate([np.zeros((cate.shape[0], 1)), cate], axis=1)
    search = TreeSearch(features, rewards, min_leaf_share)
    leaves = search.fit(max_depth)
    leaves = _refine(frame, rewards, leaves, max_depth, min_leaf_share, refine_bins, n_bins)
    stability = _stability(search, leaves, max_depth, n_bootstrap, seed)

    rules = [Rule(leaf.conditions) for leaf in leaves]
    return _tree(posterior, rules, [leaf.best_arm for leaf in leaves], stability, max_depth, min_leaf_share,
                 level, extra_masks)


def policy_tree_from_rules(posterior: Posterior, rules: Sequence[Rule], *, max_depth: int = 2,
                           min_leaf_share: float = 0.10, level: float = 0.9,
                           extra_masks: Mapping[str, np.ndarray] | None = None) -> PolicyTree:
    """The tree whose leaves are the given ``rules`` (e.g. last round's segments), scored on ``posterior``.

    Each leaf's ``best_arm`` is :func:`~sortition.policy.arms.best_arms` of its posterior-mean contrasts
    (the tree search's rule); ``stability`` is NaN. ValueError for a rule that matches no visitor.
    """
    require_posterior(posterior, "policy_tree_from_rules")
    return _tree(posterior, list(rules), None, np.full(len(rules), np.nan), max_depth, min_leaf_share, level,
                 extra_masks)


def _tree(posterior: Posterior, rules: list[Rule], best_arm: list[int] | None, stability: np.ndarray,
          max_depth: int, min_leaf_share: float, level: float,
          extra_masks: Mapping[str, np.ndarray] | None) -> PolicyTree:
    """Segments (with P(best), GATE and its interval) and the summary of leaves ``rules``, one pass.
    ``best_arm`` None: each leaf's best arm by the best-arm rule on its posterior-mean contrasts."""
    masks = segment_masks(posterior, list(enumerate(rules)))
    summary = SegmentSummary.compute(posterior, list(range(len(rules))), masks, extra_masks)
    if best_arm is None:
        best_arm = [int(b) for b in best_arms(summary.means.mean(axis=1))]
    segments = []
    q = [(1 - level) / 2, (1 + level) / 2]
    for i, (rule, mask, means, raw) in enumerate(zip(rules, masks, summary.means, summary.win, strict=True)):
        best = best_arm[i]
        j = best - 1 if best > 0 else int(np.argmax(means.mean(axis=0)))
        lower, upper = np.quantile(means[:, j], q)
        segments.append(
            Segment(
                id=i,
                rule=rule,
                share=float(mask.mean()),
                arm_best_probabilities={arm: float(p) for arm, p in zip(posterior.arms, raw)},
                best_arm=posterior.arms[best],
                gate_estimate=float(means[:, j].mean()),
                gate_interval=(float(lower), float(upper)),
                stability=float(stability[i]),
            )
        )
    tree = PolicyTree(tuple(segments), tuple(posterior.arms), 0.0, max_depth, float(min_leaf_share), summary)
    return replace(tree, welfare=float(tree.welfare_draws().mean()))


def _refine(frame, rewards, leaves, max_depth, min_leaf_share, refine_bins, n_bins) -> list[Leaf]:
    """Re-search at ``refine_bins`` resolution over the covariates the tree splits on."""
    used = list(dict.fromkeys(c.attribute for leaf in leaves for c in leaf.conditions))
    if refine_bins <= n_bins or not used:
        return leaves
    fine = TreeSearch(encode_features(frame[used], n_bins=refine_bins), rewards, min_leaf_share).fit(max_depth)
    if sum(leaf.welfare for leaf in fine) > sum(leaf.welfare for leaf in leaves):
        return fine
    return leaves


def _covariate_frame(frame: pd.DataFrame, names: Sequence[str] | None) -> pd.DataFrame:
    if names is None:
        if frame.shape[1] == 0:
            raise ValueError("the posterior's data has no covariates to split on")
        return frame
    names = list(names)
    unknown = [c for c in names if c not in frame.columns]
    if unknown or not names:
        raise ValueError(
            f"covariates {unknown or names} are not columns of the data (columns: {', '.join(map(str, frame.columns))})"
        )
    return frame[names]


def _labels(leaves: list[Leaf], n: int) -> np.ndarray:
    labels = np.full(n, -1, dtype=np.int64)
    for i, leaf in enumerate(leaves):
        labels[leaf.rows] = i
    return labels


def _stability(search: TreeSearch, leaves: list[Leaf], depth: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Per leaf: share of bootstrap refits having a leaf with Jaccard >= 0.5 with it."""
    if n_bootstrap == 0:
        return np.full(len(leaves), np.nan)
    n = search.rewards.shape[0]
    base = _labels(leaves, n)
    sizes = np.bincount(base[base >= 0], minlength=len(leaves))
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(leaves))
    for _ in range(n_bootstrap):
        refit = search.fit(depth, weights=rng.poisson(1.0, n).astype(np.float64))
        other = _labels(refit, n)
        m = len(refit)
        both = (base >= 0) & (other >= 0)
        inter = np.bincount(base[both] * m + other[both], minlength=len(leaves) * m).reshape(len(leaves), m)
        other_sizes = np.bincount(other[other >= 0], minlength=m)
        jaccard = inter / (sizes[:, None] + other_sizes[None, :] - inter)
        hits += jaccard.max(axis=1) >= 0.5
    return hits / n_bootstrap
