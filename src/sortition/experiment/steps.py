"""The pure steps of one round of a sequential experiment (``SequentialExperiment.advance`` composes them).

Each step reads its inputs and returns new values; none mutates the experiment, so a round that
raises anywhere commits nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from sortition.data import ExperimentData
from sortition.experiment.cells import CELLS, Plan, SegmentPlan, segment_plan
from sortition.experiment.export import TOTAL_SHARDS, carry_layout, shard_arms
from sortition.experiment.results import CellObservation, Graduation, SegmentResult
from sortition.experiment.settings import ExperimentSettings
from sortition.experiment.state import ExperimentState
from sortition.policy import PolicyTree, Segment, expected_loss
from sortition.policy.summary import SegmentSummary
from sortition.posterior import summarize_lifts
from sortition.rules import AnyOf, Rule, both
from sortition.serving.md5_batch import shards

# Column roles in round data; every other column is a covariate unless ``covariates`` is given.
ROLE_COLUMNS = ("subject", "arm", "outcome", "propensity", "cell", "round", "segment")
_IGNORED = frozenset({*ROLE_COLUMNS, "allocation", "experiment", "timestamp", "event_id", "flag"})


# --- reading the round ------------------------------------------------------------------------------
def validate_rows(round_data: Any, arms: tuple[str, ...], state: ExperimentState) -> pd.DataFrame:
    """The round's rows, checked and normalized (``round``/``cell`` filled in); ValueError/TypeError."""
    if not isinstance(round_data, pd.DataFrame):
        raise TypeError(f"round data must be a pandas DataFrame, got {type(round_data).__name__}")
    missing = [c for c in ("subject", "arm", "outcome") if c not in round_data.columns]
    if missing:
        raise ValueError(
            f"round data lacks columns {missing}; it needs subject, arm, outcome, propensity "
            "(and optionally cell, round, covariates)"
        )
    if len(round_data) == 0:
        raise ValueError("round data has no rows")
    rows = round_data.reset_index(drop=True).copy()
    rows["arm"] = rows["arm"].astype(str)
    unknown = ~rows["arm"].isin(arms)
    if unknown.any():
        first = np.flatnonzero(unknown.to_numpy())[:5].tolist()
        raise ValueError(
            f"column 'arm' has values not among the arms {list(arms)} at rows {first} "
            f"({rows['arm'][unknown].unique()[:5].tolist()})"
        )
    if "round" not in rows.columns:
        rows["round"] = state.round
    if "cell" not in rows.columns:
        rows["cell"] = "unknown"
    had = state.data is not None and "propensity" in state.data.columns
    has = "propensity" in rows.columns
    if state.data is not None and had != has:
        raise ValueError(
            "column 'propensity' must be present in every round or in none "
            f"(earlier rounds {'had' if had else 'lacked'} it)"
        )
    if state.data is not None:
        repeat = rows["subject"].isin(set(state.data["subject"].tolist())).to_numpy()
        if repeat.any():
            raise ValueError(
                f"subjects already seen in earlier rounds at rows {np.flatnonzero(repeat)[:5].tolist()}; "
                "each subject enters the experiment once"
            )
    return rows


def experiment_data(rows: pd.DataFrame, arms: tuple[str, ...], covariates: Sequence[str] | None) -> ExperimentData:
    """All rows so far as ExperimentData (covariates: every non-role column unless given)."""
    if covariates is None:
        covariates = [c for c in rows.columns if c not in _IGNORED]
    return ExperimentData.from_frame(
        rows, arm="arm", outcome="outcome", subject="subject", arms=arms, covariates=list(covariates),
        propensity="propensity" if "propensity" in rows.columns else None, cell="cell", round="round",
    )


def round_seed(seed: int, round_: int) -> int:
    """The round's seed from (seed, round); below 2**31 because the C++ engines take a signed int."""
    return int(np.random.SeedSequence([seed, round_]).generate_state(1)[0]) % (2**31 - 1)


def fit_options(settings: ExperimentSettings, state: ExperimentState, seed: int) -> dict[str, Any]:
    """Keywords of the round's ``fit``: the settings' options, the round seed, and the previous round's
    warm start (BCF with ``settings.warm_start`` only)."""
    options = {"outcome": settings.outcome, "engine": settings.engine, "seed": seed, **settings.fit_options}
    if settings.engine == "bcf" and settings.warm_start and state.warm_start is not None:
        options.setdefault("warm_start", state.warm_start)
    return options


# --- one pass over the draws ------------------------------------------------------------------------
def summary_masks(data: ExperimentData, this_round: np.ndarray) -> dict[str, np.ndarray]:
    """The extra masks the round summarizes besides its segments: everyone, and each cell's rows of
    this round on each treatment arm (``"cell:<cell>:<k>"``, for :func:`cell_observations`)."""
    masks = {"everyone": np.ones(data.n, dtype=bool)}
    if data.cell is not None:
        is_cell = _cell_matcher(data)
        for name in CELLS:
            in_cell = this_round & is_cell(name)
            for k in range(1, data.n_arms):
                masks[f"cell:{name}:{k}"] = in_cell & (data.arm_index == k)
    return masks


# --- stable segments -----------------------------------------------------------------------------------
# While segments settle (the first ``settle_rounds`` trees), a new tree replaces last round's when it is more
# likely better than not. Early trees are fit on little data: a tree the posterior finds worse should not
# replace a good first tree, and one it finds better should not wait for 0.9 evidence and move visitors late.
PROVISIONAL_PROBABILITY = 0.5


def resegment_threshold(resegment_probability: float, established: bool) -> float:
    """The P a new tree (or one segment's change) needs to replace last round's segments: the setting once
    they are established; while they settle, :data:`PROVISIONAL_PROBABILITY` or the setting if lower (they
    give way more easily, never less: 0 still re-segments every round)."""
    return resegment_probability if established else min(resegment_probability, PROVISIONAL_PROBABILITY)


def previous_rules(plan: Plan, data: ExperimentData) -> list[Rule] | None:
    """The rules of the plan served this round, when they are learned segments that still partition
    ``data`` (each matches someone, together everyone); None otherwise (the first round's "everyone")."""
    rules = [seg.rule for seg in plan.segments]
    if not rules or any(rule is None for rule in rules):
        return None
    index = plan.segment_index(data)
    counts = np.bincount(index, minlength=len(rules) + 1)
    if counts[len(rules)] > 0 or (counts[:len(rules)] == 0).any():
        return None
    return rules


def choose_tree(new: PolicyTree, kept: PolicyTree | None, threshold: float,
                min_gain: float = 0.0) -> tuple[PolicyTree, float | None]:
    """(tree to serve, P(new welfare - kept welfare > ``min_gain``)).

    The probability is over the same draws (``PolicyTree.welfare_draws``); ``min_gain`` (metric units per
    visitor, >= 0) is the smallest gain worth the churn (the loop: ``resegment_min_gain`` x |control mean|).
    Last round's segments (``kept``) are kept unless P >= ``threshold`` (the loop: ``resegment_probability``
    once segments are established, :data:`PROVISIONAL_PROBABILITY` while they settle). With ``kept`` None
    (nothing to compare with: the first tree) the new tree is served and P is None; so it is when the new tree
    has the same groups of visitors as ``kept``, maybe under other rules. When both serve every visitor the
    same arm, ``kept`` stays.
    """
    if kept is None or _same_groups(new, kept):
        return new, None
    p_better, same = _p_better(new, kept, min_gain)
    if same:  # the same arm for every visitor under other groups: the fits agree, keep the groups
        return kept, p_better
    return (new, p_better) if p_better >= threshold else (kept, p_better)


def _p_better(new: PolicyTree, kept: PolicyTree, min_gain: float) -> tuple[float, bool]:
    """(P(new welfare - kept welfare > ``min_gain``) over the shared draws, whether the two are the same
    welfare on every draw)."""
    w_new, w_kept = new.welfare_draws(), kept.welfare_draws()
    # trees that serve everyone the same arms have the same welfare up to float32 rounding: no evidence
    same = np.isclose(w_new, w_kept, rtol=1e-5, atol=1e-9)
    return float(np.mean((w_new - w_kept > min_gain) & ~same)), bool(same.all())


def one_segment_changes(new: PolicyTree, kept: PolicyTree, min_share: float) -> list[list[Rule | AnyOf]]:
    """Per segment of ``kept`` whose visitors ``new`` serves more than one arm, ``kept``'s rules with only
    that segment's visitors regrouped by the arm ``new`` serves them (kept's order).

    The largest group stays in the segment. Every other group moves to the kept segment that serves its arm
    (the largest, if several: a merge), or else becomes a segment of its own (a re-split) when it holds at
    least ``min_share`` of the analysed visitors, or else stays too (no leaf under the tree's minimum share).
    Each group is an OR of the segment's rule AND a new segment's rule (:func:`sortition.rules.both`), so
    only visitors whose arm changes change segment. A segment no group leaves gives no candidate."""
    if new.summary is None or kept.summary is None:
        return []
    n = kept.summary.masks.shape[1]
    arms = [seg.best_arm for seg in kept.segments]
    shares = [seg.share for seg in kept.segments]
    out = []
    for j, (segment, mask) in enumerate(zip(kept.segments, kept.summary.masks, strict=True)):
        groups: dict[Any, list[tuple[Rule | AnyOf, int]]] = {}
        for other, other_mask in zip(new.segments, new.summary.masks, strict=True):
            count = int(np.count_nonzero(mask & other_mask))
            part = both(segment.rule, other.rule) if count else None
            if part is not None:
                groups.setdefault(other.best_arm, []).append((part, count))
        size = {arm: sum(c for _, c in group) for arm, group in groups.items()}
        stay = max(size, key=size.get, default=None)
        rules: list[Rule | AnyOf | None] = [seg.rule for seg in kept.segments]
        rules[j], added, moved = None, [], False
        for arm, group in groups.items():
            parts = [rule for rule, _ in group]
            target = max((k for k in range(len(arms)) if k != j and arms[k] == arm), key=shares.__getitem__,
                         default=None)
            if arm != stay and target is not None:
                rules[target], moved = AnyOf.of([rules[target], *parts]), True
            elif arm != stay and size[arm] >= min_share * n:
                added.append(AnyOf.of(parts))
                moved = True
            else:
                groups[stay] = groups[stay] if arm == stay else groups[stay] + group
        if moved:
            rules[j] = AnyOf.of([rule for rule, _ in groups[stay]])
            out.append([*rules[:j + 1], *added, *rules[j + 1:]])
    return out


def change_one_segment(new: PolicyTree, kept: PolicyTree, score: Callable[[list[Rule | AnyOf]], PolicyTree],
                       threshold: float, min_gain: float = 0.0, min_share: float = 0.0,
                       backed: float | None = None) -> tuple[PolicyTree, float] | None:
    """(tree, P) to serve instead of ``kept`` when its segments change one at a time; None: no change.

    The candidates are :func:`one_segment_changes` of ``kept`` toward ``new``, each scored by ``score`` (the
    loop: ``LoopPolicy.keep`` on this round's posterior), and P is P(candidate welfare - kept welfare >
    ``min_gain``). The one served has the highest posterior-mean welfare among those with P >= ``threshold``;
    when none has but the whole new tree has (``backed``: its P from :func:`choose_tree`), among all of them,
    and P is then ``backed``: the evidence for the move is the whole tree's, taken one segment per round.

    A re-segmentation the posterior backs then moves only the visitors of one segment whose arm changes; the
    next rounds change the others while the evidence holds."""
    passed, rest = [], []
    for rules in one_segment_changes(new, kept, min_share):
        candidate = score(rules)
        p_better, same = _p_better(candidate, kept, min_gain)
        if not same:
            (passed if p_better >= threshold else rest).append((candidate, p_better))
    if not passed and backed is not None and backed >= threshold:
        passed = [(candidate, backed) for candidate, _ in rest]
    return max(passed, key=lambda pair: pair[0].welfare, default=None)


def segment_change(kept: PolicyTree | None, whole: PolicyTree, p_whole: float | None, one_segment: bool) -> str:
    """How the round's segments came about (``RoundResult.segment_change``: "first", "kept", "same groups",
    "one segment" or "new tree"), from :func:`choose_tree`'s ``(whole, p_whole)`` and whether
    :func:`change_one_segment` changed one."""
    if kept is None:
        return "first"
    if one_segment:
        return "one segment"
    if whole is kept:
        return "kept"
    return "same groups" if p_whole is None else "new tree"


def choose_segments(new: PolicyTree, kept: PolicyTree | None,
                    score: Callable[[list[Rule | AnyOf]], PolicyTree], settings: ExperimentSettings,
                    established: bool, scale: float) -> tuple[PolicyTree, float | None, str]:
    """(tree to serve, its P, ``RoundResult.segment_change``): the round's decision on its segments.

    ``new`` is this round's tree; ``kept`` last round's segments scored on this round's posterior (None:
    nothing to keep); ``score`` scores other rules the same way (for :func:`change_one_segment`);
    ``established`` whether last round's segments were established; ``scale`` |control mean|
    (:func:`control_scale`, the unit of ``resegment_min_gain``). While segments settle, or with
    ``resegment_probability`` 0, a new tree that passes is taken whole (:func:`choose_tree`); established
    segments change one at a time."""
    threshold = resegment_threshold(settings.resegment_probability, established)
    min_gain = settings.resegment_min_gain * scale
    whole, p_whole = choose_tree(new, kept, threshold, min_gain)
    change = None if kept is None or not established or threshold == 0 else change_one_segment(
        new, kept, score, threshold, min_gain, settings.min_leaf_share, backed=p_whole)
    tree, p = change or (whole, p_whole)
    return tree, p, segment_change(kept, whole, p_whole, change is not None)


def _same_groups(a: PolicyTree, b: PolicyTree) -> bool:
    """Whether two trees' segments are the same groups of the analysed visitors, in any order."""
    if a.summary is None or b.summary is None or len(a.segments) != len(b.segments):
        return [seg.rule for seg in a.segments] == [seg.rule for seg in b.segments]
    return {m.tobytes() for m in a.summary.masks} == {m.tobytes() for m in b.summary.masks}


def served_arms(plan: Plan, data: ExperimentData, salt: str) -> np.ndarray:
    """(n,) object array: the arm ``plan``'s flag serves each of ``data``'s visitors.

    A visitor's shard is the serving hash of ``f"{salt}-{subject}"`` (``serving.md5_batch.shards``, the
    rule the Client applies); its arm is the one its segment's shard layout (``export.shard_arms``, the
    exported flag's splits) gives that shard."""
    return _arms_of_shards(plan, data, _subject_shards(data, salt))


def _subject_shards(data: ExperimentData, salt: str) -> np.ndarray:
    return shards([f"{salt}-{s}" for s in np.asarray(data.subject).tolist()], TOTAL_SHARDS)


def _arms_of_shards(plan: Plan, data: ExperimentData, shard: np.ndarray) -> np.ndarray:
    index = plan.segment_index(data)
    arms = np.asarray(plan.arms, dtype=object)
    out = np.empty(len(shard), dtype=object)
    for i, seg in enumerate((*plan.segments, plan.default)):
        rows = index == i
        if rows.any():
            out[rows] = arms[shard_arms(seg, plan.arms)[shard[rows]]]
    return out


def carry_layouts(previous: Plan, plan: Plan, data: ExperimentData) -> Plan:
    """``plan`` with every segment's shards laid out from last round's (``export.carry_layout``), so that
    as few visitors as possible change arm; each segment's layout is carried from its
    :func:`source_segments` one (a segment kept as it was keeps its own layout, a split's parts both start
    from the parent's, a merge from its largest part's)."""
    return _carried(plan, source_segments(previous, plan, data))


def _carried(plan: Plan, sources: Sequence[SegmentPlan]) -> Plan:
    """``plan`` with each segment (then the catch-all) laid out from its source in ``sources``."""
    carried = [carry_layout(seg, source, plan.arms)
               for seg, source in zip((*plan.segments, plan.default), sources, strict=True)]
    return replace(plan, segments=tuple(carried[:-1]), default=carried[-1])


def source_segments(previous: Plan, plan: Plan, data: ExperimentData) -> list[SegmentPlan]:
    """Per segment of ``plan`` (tree order, then the catch-all), the ``previous`` segment holding most of
    its visitors among ``data``'s (ties: the earlier segment; a segment no visitor falls in: the previous
    catch-all)."""
    sources = (*previous.segments, previous.default)
    return [sources[i] for i in _source_indices(previous.segment_index(data), plan.segment_index(data),
                                                len(sources), len(plan.segments) + 1)]


def _source_indices(old: np.ndarray, new: np.ndarray, n_old: int, n_new: int) -> list[int]:
    """:func:`source_segments` as indices, from each visitor's (n,) previous and new segment index."""
    return [int(np.bincount(old[new == b], minlength=n_old).argmax()) if np.any(new == b) else n_old - 1
            for b in range(n_new)]


def limit_churn(previous: Plan, plan: Plan, data: ExperimentData, salt: str, max_churn: float, *,
                iterations: int = 6, seed: int = 0) -> tuple[Plan, float]:
    """(plan to serve, step): ``plan`` laid out from ``previous`` (:func:`carry_layouts`), with the
    optimized-cell weights of every segment that is still last round's group (paired with a previous
    segment, as :func:`churn` pairs them) moved only ``step`` of the way from its source segment's
    (:func:`source_segments`) toward ``plan``'s, ``step`` the largest in [0, 1] (to 2^-``iterations``) whose
    :func:`churn` is at most ``max_churn`` (a share of ``data``'s visitors, in [0, 1]; 1: ``plan`` as it
    is, step 1), or at most the churn of step 0 when the visitors whose segment changes are already more
    than that, measured as :func:`churn` measures it with ``seed`` (the same sample above its ``max_rows``).
    Control and explore cells and the segments are ``plan``'s. A segment that is a new group of visitors
    (a re-split's new part, a new tree's other groups), which the posterior backed, gets ``plan``'s
    weights: last round's weights belong to other visitors, and holding them back cost regret.

    Thompson weights move with every round's draws; a segment's visitors change arm in proportion to the
    move (the total variation of its weights, under carried layouts), so this caps how much of the
    audience a round re-assigns at the cost of reaching the new weights over several rounds. On a round
    that changes one segment, the others hold their weights so that the round moves no more visitors
    than the change itself needs (or ``max_churn``, when that is more)."""
    sources = source_segments(previous, plan, data)
    full = _carried(plan, sources)
    if max_churn >= 1.0:
        return full, 1.0
    churn_of = churn_from(previous, data, salt, seed=seed)
    if churn_of(full) <= max_churn:
        return full, 1.0
    arms, held = plan.arms, _paired_segments(previous, plan, data)
    if not any(held):
        return full, 1.0

    def stepped(step: float) -> Plan:
        segs = [segment_plan(seg.id, seg.rule, arms, plan.active_arms,
                             {a: (1 - step) * src.optimized.get(a, 0.0) + step * seg.optimized.get(a, 0.0)
                              for a in arms} if hold else seg.optimized, plan.weights, seg.description)
                for seg, src, hold in zip((*plan.segments, plan.default), sources, held, strict=True)]
        return _carried(replace(plan, segments=tuple(segs[:-1]), default=segs[-1]), sources)

    low, high, best = 0.0, 1.0, stepped(0.0)
    budget = max(max_churn, churn_of(best))  # step 0 moves only the visitors whose segment changed
    for _ in range(iterations):
        mid = (low + high) / 2
        candidate = stepped(mid)
        if churn_of(candidate) <= budget:
            low, best = mid, candidate
        else:
            high = mid
    return best, low


def _pairing(previous: Plan, plan: Plan, data: ExperimentData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(paired, old, new): ``paired[a, b]`` is True when previous segment ``a`` and new segment ``b`` (tree
    order, then the catch-all) are one pair, previous and new segments paired one to one, greedily by the
    most of ``data``'s visitors shared; ``old`` and ``new`` (n,) each visitor's segment index."""
    old, new = previous.segment_index(data), plan.segment_index(data)
    overlap = np.zeros((len(previous.segments) + 1, len(plan.segments) + 1), dtype=np.int64)
    np.add.at(overlap, (old, new), 1)
    paired = np.zeros_like(overlap, dtype=bool)
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        a, b = divmod(int(flat), overlap.shape[1])
        if overlap[a, b] > 0 and not paired[a].any() and not paired[:, b].any():
            paired[a, b] = True
    return paired, old, new


def _paired_segments(previous: Plan, plan: Plan, data: ExperimentData) -> list[bool]:
    """Per segment of ``plan`` (tree order, then the catch-all): whether it is still last round's group,
    that is paired (:func:`_pairing`) with the segment :func:`source_segments` lays it out from."""
    paired, old, new = _pairing(previous, plan, data)
    return [bool(paired[a, b]) for b, a in enumerate(_source_indices(old, new, *paired.shape))]


def _moved(previous: Plan, plan: Plan, data: ExperimentData) -> np.ndarray:
    """(n,) bool: whose segment changed, segments compared as groups of visitors (see :func:`churn`)."""
    paired, old, new = _pairing(previous, plan, data)
    return ~paired[old, new]


def top_arms(plan: Plan, data: ExperimentData) -> np.ndarray:
    """(n,) object array: each visitor's segment's most-allocated arm in the optimized cell."""
    arms = [max(s.optimized, key=s.optimized.get) for s in (*plan.segments, plan.default)]
    return np.asarray(arms, dtype=object)[plan.segment_index(data)]


def churn(previous: Plan, plan: Plan, data: ExperimentData, salt: str | None = None, *,
          max_rows: int | None = 100_000, seed: int = 0) -> float:
    """Share of ``data``'s visitors whose segment or served arm differs between ``previous`` and ``plan``.

    Segments are compared as groups of visitors, not as rule texts (the same group may be written by
    other rules): previous and new segments are paired one to one, greedily by the most visitors shared,
    and a visitor's segment changed when its (previous, new) segments are not a pair (so a split moves
    the smaller part). The served arm: with ``salt`` (the experiment's shard salt), the arm each plan's
    flag really serves the visitor (:func:`served_arms`: its shard in its segment's layout; the loop's
    ``RoundResult.churn``); without, its segment's most-allocated arm in the optimized cell
    (:func:`top_arms`, a proxy that counts a whole segment when its leading arm changes, however
    little the weights moved: ``RoundResult.churn_top_arm``). Above ``max_rows`` visitors the share is
    estimated on a uniform sample of that many, drawn with ``seed`` (hashing every subject key each round
    would cost seconds per million; the sample's standard error is below 0.2 points). None: every visitor.
    """
    return churn_from(previous, data, salt, max_rows=max_rows, seed=seed)(plan)


def churn_from(previous: Plan, data: ExperimentData, salt: str | None = None, *, max_rows: int | None = 100_000,
               seed: int = 0) -> Callable[[Plan], float]:
    """:func:`churn` from ``previous`` as a function of the new plan, the sample drawn and every subject
    hashed once (for comparing several candidate plans with the same previous one)."""
    if max_rows is not None and data.n > max_rows:
        data = data.subset(np.sort(np.random.default_rng([seed, 2]).choice(data.n, size=max_rows, replace=False)))
    if salt is None:
        def arms_of(p: Plan) -> np.ndarray:
            return top_arms(p, data)
    else:
        shard = _subject_shards(data, salt)

        def arms_of(p: Plan) -> np.ndarray:
            return _arms_of_shards(p, data, shard)
    before = arms_of(previous)

    def of(plan: Plan) -> float:
        return float(np.mean(_moved(previous, plan, data) | (before != arms_of(plan))))
    return of


def hold_arm_flips(previous: Plan, data: ExperimentData, segments: Sequence[Segment], summary: SegmentSummary,
                   allocation: Mapping[Any, Mapping[str, float]], active: Sequence[str],
                   probability: float) -> tuple[dict[Any, dict[str, float]], tuple[Any, ...]]:
    """(allocation to serve, ids of the segments whose last allocation was held): the incumbent-arm rule.

    A segment that is the same group of ``data``'s visitors as one of ``previous``'s (its ``summary``
    mask equals that segment's members) has an incumbent: the arm with the most optimized-cell weight
    there (none when the lead is tied, as in the uniform first plan). When the new Thompson weights
    lead with another arm (the challenger) and the posterior probability that the challenger's mean
    outcome over the segment beats the incumbent's is below ``probability``, the segment keeps last
    round's optimized weights (over ``active`` arms; still Thompson weights of an earlier round, so every
    arm keeps being explored, and the control and explore cells are untouched): a lead that flips
    between arms the posterior cannot tell apart moves visitors for nothing. ``probability`` 0 never
    holds. Probabilities are over the summary's (S, K-1) segment-mean contrast draws (control = 0);
    ``allocation`` is ``{segment id: {arm: weight}}``, arms in order, control first.
    """
    out = {sid: dict(w) for sid, w in allocation.items()}
    if probability <= 0 or not segments:
        return out, ()
    old = previous.segment_index(data)
    groups = {(old == i).tobytes(): seg for i, seg in enumerate(previous.segments)}
    held = []
    for g, seg in enumerate(segments):
        before = groups.get(np.asarray(summary.masks[g], dtype=bool).tobytes())
        if before is None or seg.id not in out:
            continue
        weights = {a: w for a, w in before.optimized.items() if a in active}
        lead = max(weights.values(), default=0.0)
        leaders = [a for a, w in weights.items() if w == lead]
        new = out[seg.id]
        challenger = max(weights, key=lambda a: new.get(a, 0.0))
        if len(leaders) != 1 or challenger == leaders[0]:
            continue
        arms = list(new)
        means = np.column_stack([np.zeros(summary.means.shape[1]), summary.segment_means(seg.id)])
        p = float(np.mean(means[:, arms.index(challenger)] > means[:, arms.index(leaders[0])]))
        if p < probability:
            total = sum(weights.values())
            out[seg.id] = {a: weights.get(a, 0.0) / total for a in arms}
            held.append(seg.id)
    return out, tuple(held)


# --- decisions over the summary ---------------------------------------------------------------------
def drop_losers(active: tuple[str, ...], segments: Sequence[Segment], streak: Mapping[str, int],
                drop_below: float, drop_after: int) -> tuple[dict[str, int], tuple[str, ...]]:
    """(new loser streaks, arms dropped now): a treatment is dropped after losing everywhere (P(best) <
    ``drop_below`` in every segment) for ``drop_after`` consecutive rounds."""
    new_streak = dict(streak)
    dropped = []
    for arm in active[1:]:
        lost = all(float(seg.arm_best_probabilities.get(arm, 0.0)) < drop_below for seg in segments)
        new_streak[arm] = new_streak.get(arm, 0) + 1 if lost else 0
        if new_streak[arm] >= drop_after:
            dropped.append(arm)
    return new_streak, tuple(dropped)


def control_scale(data: ExperimentData) -> float:
    """|mean control outcome| (1 when there is none or it is 0): the unit of ``graduation_loss``."""
    control_rows = data.arm_index == 0
    scale = abs(float(data.outcome[control_rows].mean())) if control_rows.any() else 0.0
    return scale if scale > 0 else 1.0


def segment_results(
    settings: ExperimentSettings, arms: tuple[str, ...], segments: Sequence[Segment], summary: SegmentSummary,
    allocation: Mapping[Any, Mapping[str, float]], winner_streak: Mapping[tuple[str, str], int], scale: float,
    level: float,
) -> tuple[list[SegmentResult], dict[tuple[str, str], int], list[Graduation]]:
    """Per segment its result (lifts at ``level``: the segment intervals' calibrated level, expected
    loss, allocation), and the graduation proposals: a segment's best arm, confidently positive and
    cheap to ship, for ``graduation_rounds`` rounds."""
    new_streak: dict[tuple[str, str], int] = {}
    graduations: list[Graduation] = []
    results: list[SegmentResult] = []
    for seg in segments:
        draws = summary.segment_means(seg.id)
        description = describe(seg.rule)
        loss = expected_loss(draws, arms)
        best = str(seg.best_arm)
        if best != arms[0]:
            p_pos = float((draws[:, arms.index(best) - 1] > 0).mean())
            if p_pos >= settings.graduation_probability and loss[best] <= settings.graduation_loss * scale:
                streak = winner_streak.get((description, best), 0) + 1
                new_streak[(description, best)] = streak
                if streak >= settings.graduation_rounds:
                    graduations.append(Graduation(description, best, streak, p_pos, loss[best]))
        results.append(SegmentResult(
            id=seg.id, description=description, rule=seg.rule, share=float(seg.share), best_arm=best,
            arm_best_probabilities={str(k): float(v) for k, v in seg.arm_best_probabilities.items()},
            lifts=summarize_lifts(arms, draws, level), expected_loss=loss,
            allocation={str(k): float(v) for k, v in allocation[seg.id].items()}, arm_probabilities={},
        ))
    return results, new_streak, graduations


def decision_options(settings: ExperimentSettings, segments: Sequence[Segment], graduations: Sequence[Graduation],
                     scale: float) -> dict[str, Any]:
    """``recommend``'s keywords under the graduation rule: its thresholds, and ``confirmed`` = the graduated
    (segment, arm) pairs (overall: once every segment graduated the same arm), so SHIP is a graduation and
    decisions and graduations are one vocabulary."""
    from sortition.policy import DecisionThresholds

    graduated = {(g.segment, g.arm) for g in graduations}
    confirmed = {(seg.id, seg.best_arm) for seg in segments if (describe(seg.rule), seg.best_arm) in graduated}
    arms = {arm for _, arm in confirmed}
    if segments and len(confirmed) == len(segments) and len(arms) == 1:
        confirmed.add(("overall", arms.pop()))
    thresholds = DecisionThresholds(settings.graduation_probability, settings.graduation_loss * scale)
    return {"thresholds": thresholds, "confirmed": confirmed, "level": settings.level}


def _cell_matcher(data: ExperimentData) -> Callable[[str], np.ndarray]:
    """name -> (n,) bool mask of the rows in that cell, comparing each distinct label once (not an (n,)
    array of strings: 280 MB at 10M rows)."""
    codes, levels = pd.factorize(np.asarray(data.cell, dtype=object))
    labels = np.array([str(v) for v in levels], dtype=object)
    return lambda name: np.isin(codes, np.flatnonzero(labels == name))


def cell_observations(summary: SegmentSummary, data: ExperimentData, rows: np.ndarray,
                      level: float) -> tuple[CellObservation, ...]:
    """Per cell, over ``rows`` (n,) bool: counts, mean outcome, empirical and model-based lift.

    The model lift is the posterior mean of the cell's rows' own contrasts (0 for rows on control),
    from the summary's ``"cell:<cell>:<k>"`` means (:func:`summary_masks`)."""
    if data.cell is None:
        return ()
    is_cell = _cell_matcher(data)
    y = np.asarray(data.outcome, float)
    control_cell = rows & is_cell("control")
    control_mean = float(y[control_cell].mean()) if control_cell.any() else None
    q = [(1 - level) / 2, (1 + level) / 2]
    n_draws = summary.extra["everyone"].shape[0]
    out = []
    for name in CELLS:
        in_cell = rows & is_cell(name)
        n = int(in_cell.sum())
        if n == 0:
            continue
        acc = np.zeros(n_draws)
        for k in range(1, data.n_arms):
            sel = in_cell & (data.arm_index == k)
            if sel.any():
                acc += sel.sum() * summary.extra[f"cell:{name}:{k}"][:, k - 1]
        acc /= n
        lo, hi = np.quantile(acc, q)
        mean = float(y[in_cell].mean())
        out.append(CellObservation(
            cell=name, n=n, mean_outcome=mean, empirical_lift=None if control_mean is None else mean - control_mean,
            model_lift=float(acc.mean()), model_lower=float(lo), model_upper=float(hi),
        ))
    return tuple(out)


# --- small pure helpers (shared with the report) ------------------------------------------------------
def ipw_arm_means(data: ExperimentData) -> dict[str, float]:
    """Self-normalized inverse-propensity (Hajek) mean outcome per arm over all rows.

    Under adaptive, segment-dependent allocations the raw arm means are biased toward the
    segments that received an arm more often; weighting each row by 1 / propensity undoes it.
    Without recorded propensities the plain means are returned.
    """
    y = np.asarray(data.outcome, float)
    w = np.ones_like(y) if data.propensity is None else 1.0 / np.asarray(data.propensity, float)
    out = {}
    for k, arm in enumerate(data.arms):
        rows = data.arm_index == k
        out[str(arm)] = float(np.sum(w[rows] * y[rows]) / np.sum(w[rows])) if rows.any() else float("nan")
    return out


def describe(rule: Any) -> str:
    if rule is None:
        return "everyone"
    text = rule.describe() if callable(getattr(rule, "describe", None)) else str(rule)
    return text or "everyone"
