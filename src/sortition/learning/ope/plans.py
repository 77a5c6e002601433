"""Off-policy data for a flag/segment allocation plan.

A plan gives, per segment, a traffic split over arms (variations). Its probability for a logged
event is the plan's weight for the logged arm in the event's segment. The reward model for DM/DR
is the logged mean reward per (segment, arm), self-normalized by the logging propensities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sortition.learning.ope.data import OffPolicyData


def segment_labels(frame: Any, segments: Sequence[tuple[str, Any]], default: str = "default") -> np.ndarray:
    """(n,) segment label per row: the first segment whose rule matches, like flag allocations.

    Args:
        frame: the rows' covariates (whatever the rules' ``mask`` accepts, e.g. a DataFrame).
        segments: ordered (name, rule) pairs; a rule is anything with ``mask(frame) -> (n,) bool``
            (``sortition.rules.Rule``) or an (n,) boolean array.
        default: label for rows no rule matches.
    """
    labels: np.ndarray | None = None
    taken: np.ndarray | None = None
    for name, rule in segments:
        m = np.asarray(rule.mask(frame) if hasattr(rule, "mask") else rule, dtype=bool)
        if labels is None:
            labels = np.full(m.shape[0], default, dtype=object)
            taken = np.zeros(m.shape[0], dtype=bool)
        assert taken is not None
        new = m & ~taken
        labels[new] = name
        taken |= m
    if labels is None:
        raise ValueError("segments is empty: give at least one (name, rule) pair")
    return labels


def _labels(values: Sequence[Any], name: str) -> list[Any]:
    """Labels as a plain list (hashable values such as str or tuple, one per event)."""
    out = values.tolist() if hasattr(values, "tolist") else list(values)
    for i, v in enumerate(out[:1000]):
        if not isinstance(v, str | int | float | bool | tuple | None):
            raise TypeError(f"{name}[{i}] is {type(v).__name__}; use hashable labels (str, int, tuple)")
    return out


def plan_probabilities(
    segment: Sequence[Any], arm: Sequence[Any], plan: Mapping[Any, Mapping[Any, float]]
) -> np.ndarray:
    """(n,) the plan's probability of each logged arm in its row's segment.

    Args:
        segment: (n,) segment label per logged event.
        arm: (n,) logged arm (variation key) per event.
        plan: segment -> {arm: weight}; weights in a segment must sum to 1.
    """
    seg = _labels(segment, "segment")
    a = _labels(arm, "arm")
    if len(seg) != len(a):
        raise ValueError(f"segment has {len(seg)} rows but arm has {len(a)}")
    for s, split in plan.items():
        total = sum(split.values())
        if abs(total - 1) > 1e-6 or any(w < 0 for w in split.values()):
            raise ValueError(f"plan[{s!r}] weights must be >= 0 and sum to 1; they sum to {total}")
    missing = sorted({str(s) for s in set(seg) if s not in plan})
    if missing:
        raise ValueError(f"plan has no split for segments {missing[:5]}; give every logged segment a split")
    return np.array([plan[s].get(x, 0.0) for s, x in zip(seg, a, strict=True)])


def plan_data(
    reward: Sequence[float],
    logging_probability: Sequence[float],
    segment: Sequence[Any],
    arm: Sequence[Any],
    plan: Mapping[Any, Mapping[Any, float]],
    min_logging_probability: float = 1e-3,
) -> OffPolicyData:
    """OffPolicyData for evaluating ``plan`` on logged (segment, arm, reward, propensity) events.

    The reward model q(segment, arm) is the self-normalized IPS mean of the logged rewards in that
    cell (0 for cells never logged); ``unsupported_mass`` is the plan's weight on arms that no
    logged event in the segment received with probability >= ``min_logging_probability``.
    """
    r = np.asarray(reward, dtype=np.float64)
    p = np.asarray(logging_probability, dtype=np.float64)
    seg = _labels(segment, "segment")
    a = _labels(arm, "arm")
    if not (len(r) == len(p) == len(seg)):
        raise ValueError(f"reward, logging_probability and segment have {len(r)}, {len(p)}, {len(seg)} rows")
    target = plan_probabilities(seg, a, plan)
    w = 1.0 / np.clip(p, 1e-12, None)
    cells: dict[tuple[Any, Any], list[int]] = {}
    for i, key in enumerate(zip(seg, a, strict=True)):
        cells.setdefault(key, []).append(i)
    q: dict[tuple[Any, Any], float] = {}
    supported: set[tuple[Any, Any]] = set()
    for key, rows in cells.items():
        q[key] = float(np.average(r[rows], weights=w[rows]))
        if np.any(p[rows] >= min_logging_probability):
            supported.add(key)
    q_logged = np.array([q[k] for k in zip(seg, a, strict=True)])
    q_target = np.array([sum(wt * q.get((s, x), 0.0) for x, wt in plan[s].items()) for s in seg])
    unsupported = np.array([sum(wt for x, wt in plan[s].items() if (s, x) not in supported) for s in seg])
    return OffPolicyData(
        reward=r,
        logging_probability=p,
        target_probability=target,
        expected_reward_logged=q_logged,
        expected_reward_target=q_target,
        unsupported_mass=unsupported,
    )
