"""``SegmentSummary``: a round's segment means, computed in one pass over the posterior draws.

The tree, the allocation, ``recommend``, graduation and the loop's cell observations all read the
same (S, K-1) segment-mean contrast draws. One ``Posterior.segments_mean_contrasts`` call over every
mask they need (the segments, then any extra masks such as "everyone" or a cell's arm) replaces one
pass per consumer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sortition.policy.arms import arm_win_frequencies
from sortition.posterior import Posterior


@dataclass(frozen=True, eq=False)
class SegmentSummary:
    """Segment masks and their posterior mean-contrast draws.

    Attributes:
        ids: segment ids, in order (G,).
        masks: (G, n) bool members of each segment.
        means: (G, S, K-1) float64 per segment and draw, the mean contrast over its visitors.
        win: (G, K) raw win frequencies (P(arm is the segment's best), control first).
        extra: per name, the (S, K-1) mean-contrast draws over that extra mask (e.g. "everyone"),
            computed in the same pass.
    """

    ids: tuple
    masks: np.ndarray = field(repr=False)
    means: np.ndarray = field(repr=False)
    win: np.ndarray = field(repr=False)
    extra: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def compute(cls, posterior: Posterior, ids: Sequence[Any], masks: np.ndarray,
                extra: Mapping[str, np.ndarray] | None = None) -> SegmentSummary:
        """One pass over the draws: ``masks`` (G, n) bool for ``ids``, plus ``extra`` named (n,) masks.

        Extra masks that select no visitor are left out of ``extra`` (their mean is undefined)."""
        masks = np.asarray(masks, dtype=bool).reshape(len(ids), posterior.n)
        named = {k: np.asarray(m, dtype=bool) for k, m in (extra or {}).items() if np.any(m)}
        stacked = np.concatenate([masks, np.stack(list(named.values()))]) if named else masks
        means = posterior.segments_mean_contrasts(stacked) if len(stacked) else np.zeros((0, posterior.n_draws,
                                                                                            posterior.n_arms - 1))
        g = len(ids)
        win = (np.stack([arm_win_frequencies(m, posterior.n_arms) for m in means[:g]]) if g
               else np.zeros((0, posterior.n_arms)))
        return cls(tuple(ids), masks, means[:g], win, dict(zip(named, means[g:], strict=True)))

    def index(self, segment_id: Any) -> int:
        """Position of ``segment_id``; KeyError naming the known ids."""
        try:
            return self.ids.index(segment_id)
        except ValueError:
            raise KeyError(f"segment {segment_id!r} is not in this summary (ids {list(self.ids)})") from None

    def segment_means(self, segment_id: Any) -> np.ndarray:
        """(S, K-1) mean-contrast draws of one segment."""
        return self.means[self.index(segment_id)]

    def covers(self, segments: Sequence[Any]) -> bool:
        """Whether this summary holds exactly ``segments`` (by id), in order."""
        return tuple(seg.id for seg in segments) == self.ids
