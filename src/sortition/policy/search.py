"""Welfare-optimal policy tree search over arrays.

The welfare of a leaf is ``max_k sum_{i in leaf} w_i R[i, k]``, with ``R (n, K)`` the posterior-mean
reward of each arm relative to control (column 0 is 0). Splits are found on cumulative sums over
ordered slots (:mod:`sortition.policy.features`): a node's best single split from 1-D slot
histograms, and the best split *with the best split of each child* (an exact depth-2 search) from
2-D histograms of every feature pair, vectorized over all root thresholds at once. Trees deeper
than 2 choose each split by that depth-2 look-ahead, greedily.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sortition.policy.arms import best_arms
from sortition.policy.features import Feature
from sortition.rules import Condition

_NEG = -np.inf


@dataclass(frozen=True)
class Split:
    feature: int
    order: np.ndarray  # (n_slots,) slot ids in split order; the missing slot is always last
    t: int  # left = ordered positions 0..t


@dataclass(frozen=True)
class Leaf:
    rows: np.ndarray  # (n_leaf,) row indices
    conditions: tuple[Condition, ...]
    best_arm: int  # arm index under best_arms of the leaf's summed rewards
    welfare: float  # max_k of the leaf's summed (weighted) rewards


def _histogram(index: np.ndarray, size: int, values: np.ndarray) -> np.ndarray:
    """Sums of ``values (n, C)`` per ``index`` value: (size, C)."""
    return np.stack([np.bincount(index, weights=values[:, c], minlength=size) for c in range(values.shape[1])], axis=1)


def _orders(h: np.ndarray, categorical: bool) -> list[np.ndarray]:
    """Candidate slot orders, each (T, m), missing slot always last. Numeric: the natural order.
    Categorical: levels ordered by the node's mean reward of each treatment arm, and by the mean
    difference between its two best arms (empty levels last); the split is the best prefix of any."""
    n_nodes, m, width = h.shape
    if not categorical:
        return [np.broadcast_to(np.arange(m), (n_nodes, m))]
    k = width - 1
    sums, counts = h[:, : m - 1, :k], h[:, : m - 1, k]
    ranked = np.argsort(-sums.sum(axis=1), axis=1, kind="stable")
    take = np.arange(n_nodes)
    scores = [sums[:, :, arm] for arm in range(1, k)]
    if k > 2:
        scores.append(sums[take, :, ranked[:, 0]] - sums[take, :, ranked[:, 1]])
    present = counts > 0
    safe = np.where(present, counts, 1.0)
    orders = []
    for score in scores:
        mean = np.where(present, score / safe, np.inf)
        order = np.argsort(mean, axis=1, kind="stable")
        orders.append(np.concatenate([order, np.full((n_nodes, 1), m - 1)], axis=1))
    return orders


def best_splits(h: np.ndarray, categorical: bool, min_count: float):
    """Best single split of each of T nodes over one feature.

    Args:
        h: (T, m, K+1) slot histograms (K reward sums, then the weight), missing slot last.

    Returns:
        value (T,) of the best feasible split (-inf if none), its position t (T,), the order
        (T, m) it splits, and the value without a split (T,).
    """
    n_nodes, m, width = h.shape
    k = width - 1
    total = h.sum(axis=1)
    nosplit = total[:, :k].max(axis=1)
    best_value = np.full(n_nodes, _NEG)
    best_t = np.zeros(n_nodes, dtype=np.int64)
    best_order = None
    for order in _orders(h, categorical):
        hh = np.take_along_axis(h, order[:, :, None], axis=1) if categorical else h
        value, t = _prefix_splits(hh, total, min_count)
        if best_order is None:
            best_value, best_t, best_order = value, t, np.array(order)
        else:
            better = value > best_value
            best_value = np.where(better, value, best_value)
            best_t = np.where(better, t, best_t)
            best_order[better] = order[better]
    return best_value, best_t, best_order, nosplit


def _last_argmax(value: np.ndarray) -> np.ndarray:
    """argmax along the last axis, ties to the LAST position (the null split, with fewest leaves)."""
    width = value.shape[-1]
    return width - 1 - np.argmax(value[..., ::-1], axis=-1)


def _prefix_splits(h: np.ndarray, total: np.ndarray, min_count: float):
    """Value and position of the best split of each node over ordered slots (missing slot last).

    Position t < m-2 is a value split: positions <= t go left, the others right, and the node's
    missing values (if any) form a third leaf ``x IS NULL``, exempt from the minimum size (they
    fit in neither conjunction). Position m-2 is the null split: present vs missing, both sides
    regular children.
    """
    n_nodes, m, width = h.shape
    k = width - 1
    if m < 2:
        return np.full(n_nodes, _NEG), np.zeros(n_nodes, dtype=np.int64)
    missing = h[:, -1, :]  # (T, K+1)
    left = np.cumsum(h, axis=1)[:, :-1, :]  # (T, m-1, K+1)
    right = total[:, None, :] - left - missing[:, None, :]  # present rows after position t
    value = left[..., :k].max(axis=2) + right[..., :k].max(axis=2) + missing[:, None, :k].max(axis=2)
    ok = (left[..., k] >= min_count) & (right[..., k] >= min_count)
    ok[:, m - 2] = (left[:, m - 2, k] >= min_count) & (missing[:, k] >= min_count)
    value = np.where(ok, value, _NEG)
    t = _last_argmax(value)
    return value[np.arange(n_nodes), t], t


class TreeSearch:
    """Exact search of depth <= 2 (greedy depth-2 look-ahead beyond) over encoded features.

    Args:
        features: encoded covariates (same n).
        rewards: (n, K) posterior-mean reward of each arm relative to control (column 0 = 0).
        min_leaf_share: minimum share of the (weighted) visitors in every leaf.
    """

    def __init__(self, features: list[Feature], rewards: np.ndarray, min_leaf_share: float):
        self.features = features
        self.rewards = np.asarray(rewards, dtype=np.float64)
        self.min_leaf_share = min_leaf_share

    def fit(self, max_depth: int, weights: np.ndarray | None = None) -> list[Leaf]:
        n = self.rewards.shape[0]
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self._w = w
        self._values = np.concatenate([self.rewards * w[:, None], w[:, None]], axis=1)
        self._min_count = self.min_leaf_share * w.sum() * (1 - 1e-12)
        self._tol = 1e-9 * (np.abs(self._values[:, :-1]).sum() + 1e-300)
        leaves: list[Leaf] = []
        self._grow(np.arange(n), max_depth, (), leaves)
        return leaves

    # --- recursion ----------------------------------------------------------------------------
    def _grow(self, rows: np.ndarray, depth: int, path: tuple, leaves: list[Leaf]) -> None:
        split = None
        if depth >= 1 and self._values[rows, -1].sum() >= 2 * self._min_count:
            split = self._lookahead_split(rows) if depth >= 2 else self._single_split(rows)
        if split is None:
            sums = self._values[rows, :-1].sum(axis=0)
            leaves.append(Leaf(rows, _simplify(path), int(best_arms(sums[1:])), float(sums.max())))
            return
        feature = self.features[split.feature]
        position = np.empty(feature.n_slots, dtype=np.int64)
        position[split.order] = np.arange(feature.n_slots)
        slot = feature.codes[rows]
        pos = position[slot]
        missing = slot == feature.n_slots - 1
        left_cond, right_cond = feature.split_conditions(split.order, split.t)
        if split.t == feature.n_slots - 2:
            self._grow(rows[~missing], depth - 1, path + (left_cond,), leaves)
            self._grow(rows[missing], depth - 1, path + (right_cond,), leaves)
            return
        self._grow(rows[(pos <= split.t) & ~missing], depth - 1, path + (left_cond,), leaves)
        self._grow(rows[(pos > split.t) & ~missing], depth - 1, path + (right_cond,), leaves)
        if missing.any():  # the missing values of a value split: their own leaf
            self._grow(rows[missing], 0, path + (Condition(feature.name, "IS_NULL", True),), leaves)

    def _single_split(self, rows: np.ndarray) -> Split | None:
        values = self._values[rows]
        best, choice, base = _NEG, None, None
        for j, f in enumerate(self.features):
            h = _histogram(f.codes[rows], f.n_slots, values)[None]
            value, t, order, nosplit = best_splits(h, f.categorical, self._min_count)
            base = nosplit[0]
            if value[0] > best:
                best, choice = value[0], Split(j, order[0].copy(), int(t[0]))
        if choice is None or best <= base + self._tol:
            return None
        return choice

    def _lookahead_split(self, rows: np.ndarray) -> Split | None:
        """The root split maximizing root-split value plus each child's best single split."""
        values = self._values[rows]
        codes = [f.codes[rows] for f in self.features]
        cache: dict[tuple[int, int], np.ndarray] = {}

        def pair(a: int, b: int) -> np.ndarray:
            if (b, a) in cache:
                return cache[(b, a)].transpose(1, 0, 2)
            fa, fb = self.features[a], self.features[b]
            h = _histogram(codes[a] * fb.n_slots + codes[b], fa.n_slots * fb.n_slots, values)
            cache[(a, b)] = h.reshape(fa.n_slots, fb.n_slots, -1)
            return cache[(a, b)]

        best, choice, base = _NEG, None, None
        k = values.shape[1] - 1
        for j1, f1 in enumerate(self.features):
            h1 = _histogram(codes[j1], f1.n_slots, values)[None]
            base = h1[0, :, :k].sum(axis=0).max()
            m1 = f1.n_slots
            null = m1 - 2
            for order1 in _orders(h1, f1.categorical):  # categorical roots: every candidate order
                order1 = np.array(order1[0])
                best_left = np.full(m1 - 1, _NEG)
                best_right = np.full(m1 - 1, _NEG)
                for j2, f2 in enumerate(self.features):
                    h2 = pair(j1, j2)[order1]  # (m1, m2, K+1), the root's missing slot last
                    left = np.cumsum(h2, axis=0)[:-1]  # (m1-1, m2, K+1): the left child per root position
                    right = h2.sum(axis=0)[None] - left - h2[-1][None]  # present rows after the position
                    right[null] = h2[-1]  # the null split's right child: the missing rows
                    value_l, _, _, keep_l = best_splits(left, f2.categorical, self._min_count)
                    value_r, _, _, keep_r = best_splits(right, f2.categorical, self._min_count)
                    best_left = np.maximum(best_left, np.maximum(value_l, keep_l))
                    best_right = np.maximum(best_right, np.maximum(value_r, keep_r))
                # feasibility of the root split itself; a value split's missing rows are one more leaf
                hist = h1[0, order1]
                cum1 = np.cumsum(hist, axis=0)[:-1]
                missing = hist[-1]
                right_count = hist[:, k].sum() - cum1[:, k] - missing[k]
                ok = (cum1[:, k] >= self._min_count) & (right_count >= self._min_count)
                ok[null] = (cum1[null, k] >= self._min_count) & (missing[k] >= self._min_count)
                extra = np.full(m1 - 1, missing[:k].max())
                extra[null] = 0.0
                total = np.where(ok, best_left + best_right + extra, _NEG)
                t = int(_last_argmax(total))
                if total[t] > best:
                    best, choice = total[t], Split(j1, order1, t)
        if choice is None or best <= base + self._tol:
            return None
        return choice


def _simplify(path: tuple[Condition, ...]) -> tuple[Condition, ...]:
    """One condition per attribute and kind where the path repeats one: the tighter comparison
    (x <= 5 AND x <= 3 -> x <= 3), set conditions intersected (ONE_OF {a, b} AND NOT_ONE_OF {b}
    -> ONE_OF {a}). Every rewrite matches exactly the same visitors, missing values included."""
    keep: list[Condition] = []
    for cond in path:
        for i, prev in enumerate(keep):
            if prev.attribute != cond.attribute:
                continue
            merged = _merge(prev, cond)
            if merged is not None:
                keep[i] = merged
                break
        else:
            keep.append(cond)
    return tuple(keep)


def _merge(a: Condition, b: Condition) -> Condition | None:
    if a.operator == b.operator and a.operator in ("LTE", "GT"):
        tighter = min if a.operator == "LTE" else max
        return Condition(a.attribute, a.operator, tighter(a.value, b.value))
    sets = ("ONE_OF", "NOT_ONE_OF")
    if a.operator in sets and b.operator in sets:
        if a.operator == "NOT_ONE_OF" and b.operator == "NOT_ONE_OF":
            return Condition(a.attribute, "NOT_ONE_OF", list(dict.fromkeys(a.value + b.value)))
        if a.operator == "NOT_ONE_OF":
            a, b = b, a
        if b.operator == "ONE_OF":
            return Condition(a.attribute, "ONE_OF", [v for v in a.value if v in b.value])
        return Condition(a.attribute, "ONE_OF", [v for v in a.value if v not in b.value])
    return None
