"""``fit_policy_tree``: the few readable segments that maximize posterior expected welfare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from sortition import display
from sortition.policy.allocation import require_posterior, segment_masks
from sortition.policy.arms import arm_win_frequencies, best_arms
from sortition.policy.features import encode_features
from sortition.policy.search import Leaf, TreeSearch
from sortition.policy.segments import Segment
from sortition.policy.summary import SegmentSummary
from sortition.posterior import Posterior
from sortition.rules import AnyOf, Rule


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
    merge: bool = True,
    merge_probability: float = 0.6,
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
        merge: merge spurious leaves (:func:`merge_groups`): a leaf below ``min_leaf_share`` (the
            ``x IS NULL`` leaves are exempt from it in the search) joins the leaf whose best arm most
            often wins in it, and two leaves become one segment (an ``AnyOf``) unless the posterior
            probability that serving them apart raises welfare (:func:`split_gain_draws` > 0) is at
            least ``merge_probability`` (leaves with the same best arm always merge: the policy serves
            them the same arm, so its welfare is unchanged). Segment ``stability`` is then the mean of
            its leaves'.
        merge_probability: the evidence two leaves need to stay apart, in [0, 1]; 0 merges only
            leaves with the same best arm (and the small ones). The default 0.6 is deliberately weak
            evidence: in the adaptive loop a merged segment is served one arm, which starves the data
            that would split it again (docs/policy.md).
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
    if isinstance(merge_probability, bool) or not isinstance(merge_probability, (int, float)) or not (
            0.0 <= merge_probability <= 1.0):
        raise ValueError(f"merge_probability must be in [0, 1] (the default is 0.6), got {merge_probability!r}")
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
                 level, extra_masks, merge_probability if merge else None)


def policy_tree_from_rules(posterior: Posterior, rules: Sequence[Rule], *, max_depth: int = 2,
                           min_leaf_share: float = 0.10, level: float = 0.9,
                           extra_masks: Mapping[str, np.ndarray] | None = None) -> PolicyTree:
    """The tree whose leaves are the given ``rules`` (e.g. last round's segments), scored on ``posterior``.

    Each leaf's ``best_arm`` is :func:`~sortition.policy.arms.best_arms` of its posterior-mean contrasts
    (the tree search's rule); ``stability`` is NaN. ValueError for a rule that matches no visitor.
    """
    require_posterior(posterior, "policy_tree_from_rules")
    return _tree(posterior, list(rules), None, np.full(len(rules), np.nan), max_depth, min_leaf_share, level,
                 extra_masks, merge_probability=None)


def _served_value(means: np.ndarray, arm: int) -> np.ndarray:
    """(S,) per draw the mean contrast of serving ``arm`` (0 for control) from (S, K-1) draws."""
    return np.zeros(means.shape[0]) if arm == 0 else means[:, arm - 1]


def split_gain_draws(count_a: float, means_a: np.ndarray, count_b: float, means_b: np.ndarray) -> np.ndarray:
    """(S,) per draw, the gain per visitor of serving groups a and b apart rather than as one segment.

    Apart, each group is served its own best arm ``k_a``, ``k_b``; together, both are served ``k_ab``,
    the best arm of the pooled (count-weighted) means. All three by :func:`best_arms` on posterior
    means, so the gain per draw is

        (n_a (v_a(k_a) - v_a(k_ab)) + n_b (v_b(k_b) - v_b(k_ab))) / (n_a + n_b)

    with ``v_g(k)`` group g's mean contrast of arm k on that draw (0 for control), in metric units.
    It is exactly 0 on every draw when the two groups have the same best arm; its mean is >= 0.

    Args:
        count_a, count_b: the groups' visitor counts (> 0).
        means_a, means_b: (S, K-1) their mean-contrast draws.
    """
    means_a, means_b = np.asarray(means_a, dtype=np.float64), np.asarray(means_b, dtype=np.float64)
    total = count_a + count_b
    pooled = (count_a * means_a + count_b * means_b) / total
    k_a, k_b, k_ab = (int(best_arms(m.mean(axis=0))) for m in (means_a, means_b, pooled))
    gain = (count_a * (_served_value(means_a, k_a) - _served_value(means_a, k_ab))
            + count_b * (_served_value(means_b, k_b) - _served_value(means_b, k_ab)))
    return gain / total


def merge_groups(counts: np.ndarray, means: np.ndarray, min_count: float,
                 probability: float = 0.6) -> list[list[int]]:
    """Leaves to merge, as groups of leaf positions (each group in leaf order, groups by first leaf).

    Greedy, one merge at a time, on the leaves' visitor ``counts`` (G,) and segment-mean contrast draws
    ``means`` (G, S, K-1) (a merged group's draws are the count-weighted mean, so the draws are not
    read again):

    1. while a group holds fewer than ``min_count`` visitors, the smallest joins the group whose best
       arm wins most often in its draws (a leaf must carry a minimum share);
    2. then, while some pair of groups lacks evidence that serving them apart raises welfare, i.e.
       ``P(split_gain_draws(a, b) > 0) < probability`` over the draws, the pair with the least such
       evidence merges (ties: the first pair in leaf order). Two groups with the same best arm have a
       gain of 0 on every draw, so they always merge.
    """
    groups = [[g] for g in range(len(counts))]
    n = [float(c) for c in counts]
    m = [np.asarray(x, dtype=np.float64) for x in means]
    while len(groups) > 1:
        small = [i for i in range(len(groups)) if n[i] < min_count]
        if small:
            best = [int(b) for b in best_arms(np.stack([x.mean(axis=0) for x in m]))]
            i = min(small, key=lambda g: n[g])
            win = arm_win_frequencies(m[i], m[i].shape[1] + 1)
            j = max((g for g in range(len(groups)) if g != i), key=lambda g: (win[best[g]], n[g]))
        else:
            evidence = {(a, b): float(np.mean(split_gain_draws(n[a], m[a], n[b], m[b]) > 0))
                        for a in range(len(groups)) for b in range(a + 1, len(groups))}
            (j, i), p = min(evidence.items(), key=lambda item: item[1])
            if p >= probability:
                break
        m[j] = (n[i] * m[i] + n[j] * m[j]) / (n[i] + n[j])
        n[j] += n[i]
        groups[j] = sorted(groups[j] + groups[i])
        del groups[i], n[i], m[i]
    return sorted(groups)


def _tree(posterior: Posterior, rules: list[Rule], best_arm: list[int] | None, stability: np.ndarray,
          max_depth: int, min_leaf_share: float, level: float,
          extra_masks: Mapping[str, np.ndarray] | None, merge_probability: float | None) -> PolicyTree:
    """Segments (with P(best), GATE and its interval) and the summary of leaves ``rules``, one pass over
    the draws (merged leaves' means are combined from their leaves'). ``best_arm`` None: each leaf's best
    arm by the best-arm rule on its posterior-mean contrasts. ``merge_probability`` None: no merging."""
    masks = segment_masks(posterior, list(enumerate(rules)))
    summary = SegmentSummary.compute(posterior, list(range(len(rules))), masks, extra_masks)
    if merge_probability is not None and len(rules) > 1:
        counts = masks.sum(axis=1)
        min_count = min_leaf_share * posterior.n * (1 - 1e-12)
        groups = merge_groups(counts, summary.means, min_count, merge_probability)
        if len(groups) < len(rules):
            # One group left that holds every visitor serves everyone: the root rule, not an OR of
            # leaves that reads like a split and leaves missing or unseen values to the catch-all.
            whole = len(groups) == 1 and bool(masks.any(axis=0).all())
            rules = [Rule() if whole else AnyOf.of([rules[g] for g in group]) for group in groups]
            stability = np.array([np.mean(stability[group]) for group in groups])
            masks = np.stack([masks[group].any(axis=0) for group in groups])
            means = np.stack([np.tensordot(counts[group], summary.means[group], axes=1) / counts[group].sum()
                              for group in groups])
            win = np.stack([arm_win_frequencies(x, posterior.n_arms) for x in means])
            summary = SegmentSummary(tuple(range(len(groups))), masks, means, win, summary.extra)
            best_arm = None
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
