"""``Client``: request-time flag assignments and bandit actions over a swappable Configuration.

One evaluation function, :meth:`Client._evaluate`, serves every flag call: the single call, the
details call (which passes a list that collects the trace) and the batch calls (which evaluate
subject by subject with it, with shards precomputed in bulk for large audiences). Bandit calls
add the action on top of it.

Every evaluation reads the configuration reference once, so a concurrent
:meth:`Client.set_configuration` is seen whole or not at all. Evaluations never raise: a problem
returns the default, and is reported in the details and through ``logging``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from time import time
from typing import Any

from sortition.serving.attributes import Attributes
from sortition.serving.bandits import BanditEvaluation, evaluate_bandit
from sortition.serving.configuration import Configuration
from sortition.serving.evaluation import UNEVALUATED, hash_attribute_names, match_flag
from sortition.serving.events import (
    DedupCache,
    assignment_event,
    bandit_event,
    clean_groups,
    now_rfc3339,
    offered_event_field,
    offered_groups,
    safe_log,
)
from sortition.serving.model import Flag
from sortition.serving.results import (
    ASSIGNMENT_ERROR,
    DEFAULT_ALLOCATION_NULL,
    FLAG_UNRECOGNIZED_OR_DISABLED,
    MATCH,
    TYPE_MISMATCH,
    AllocationDetail,
    AssignmentDetails,
    BanditResult,
)
from sortition.serving.sharding import MIN_VECTOR

logger = logging.getLogger("sortition.serving")

_EXPECTED = {
    bool: ("BOOLEAN",),
    int: ("INTEGER", "NUMERIC"),
    float: ("NUMERIC", "INTEGER"),
    str: ("STRING",),
    dict: ("JSON",),
    list: ("JSON",),
}
_STRING = ("STRING",)
_NO_ATTRIBUTES: Mapping[str, Any] = {}

# Below this many subjects per bandit the scalar evaluator is as fast as numpy.
MIN_BANDIT_VECTOR = 16
# Subjects evaluated one by one to learn which salts a large batch should hash in bulk.
SAMPLE = 256


class BadRequest(Exception):
    """A request the evaluator refuses (its message is the reason reported); never escapes."""


def _expected_types(default: Any, variation_type: str | None) -> tuple[str, ...] | None:
    if variation_type is not None:
        return (variation_type.upper(),) if isinstance(variation_type, str) else ("?",)
    if default is None:
        return None
    return _EXPECTED.get(type(default))


def _flat(subject_attributes: Any) -> Mapping[str, Any]:
    if subject_attributes.__class__ is dict:
        return subject_attributes
    if subject_attributes is None:
        return _NO_ATTRIBUTES
    if isinstance(subject_attributes, Attributes):
        return subject_attributes.flat()
    if isinstance(subject_attributes, Mapping):
        return subject_attributes
    raise BadRequest(f"subject_attributes must be a dict or Attributes, got {type(subject_attributes).__name__}")


def _serve(variation: Any) -> Any:
    value = variation.value
    if value.__class__ is dict or value.__class__ is list:  # JSON: a fresh object each call
        raw = variation.raw
        return json.loads(raw) if isinstance(raw, str) else copy.deepcopy(value)
    return value


def _items(subjects: Any) -> list[tuple[Any, Any]]:
    """``(subject_key, attributes)`` pairs from a mapping or an iterable of pairs; an entry that
    is not a pair becomes ``(entry, None)`` (refused per subject, with the reason)."""
    if isinstance(subjects, Mapping):
        return list(subjects.items())
    if isinstance(subjects, (str, bytes)) or not isinstance(subjects, Iterable):
        _report_failure("sortition: subjects must be {key: attributes} or (key, attributes) pairs, got %s",
                        type(subjects).__name__, traceback=False)
        return []
    out = []
    for entry in subjects:
        if isinstance(entry, (tuple, list)) and len(entry) == 2:
            out.append((entry[0], entry[1]))
        else:
            out.append((entry, None))
    return out


def _actions(actions: Any) -> dict[str, Any]:
    """``{action_key: attributes}``: from a mapping or a list of keys. An action whose key is not
    a string, or whose attributes are not a dict / Attributes / None, is left out (a warning):
    a bad action affects only itself."""
    if actions.__class__ is dict:  # the common case, checked in one pass of class tests
        for k, v in actions.items():
            if k.__class__ is not str or not (v is None or v.__class__ is dict or v.__class__ is Attributes):
                break
        else:
            return actions
    if isinstance(actions, Mapping):
        good = {k: v for k, v in actions.items() if isinstance(k, str)}
    elif isinstance(actions, (str, bytes)) or not isinstance(actions, Iterable):
        raise BadRequest(f"actions must be a dict {{action_key: attributes}} or a list of action keys, "
                         f"got {type(actions).__name__}")
    else:
        good = {k: None for k in actions if isinstance(k, str)}
    bad = [k for k, v in good.items() if v is not None and not isinstance(v, (Mapping, Attributes))]
    if bad:
        good = {k: v for k, v in good.items() if k not in bad}
    if bad or (isinstance(actions, Mapping) and len(good) + len(bad) < len(actions)):
        _report_failure("sortition: actions left out (key not a string, or attributes not a dict): %r",
                        bad[:5], traceback=False)
    return good


class Client:
    """Serve flags and bandit actions from a :class:`Configuration`.

    Args:
        configuration: the initial configuration (``None``: every call returns its default
            until :meth:`set_configuration`).
        assignment_logger: object with ``log_assignment(event: dict)``; called when the matched
            allocation has ``doLog``.
        bandit_logger: object with ``log_bandit_action(event: dict)``; defaults to
            ``assignment_logger`` when that has the method (as Eppo's loggers do).
        dedup_cache_size: how many (flag, subject) pairs each dedup cache remembers.
        log_offered_actions: add every offered action's attributes to each bandit event, under
            Sortition's own field ``sortitionOfferedActions`` (Eppo's fields are unchanged), so
            that other models can be evaluated off-line on the logs. Set False to keep events
            small when action sets are large.
    """

    def __init__(
        self,
        configuration: Configuration | None = None,
        assignment_logger: Any = None,
        bandit_logger: Any = None,
        dedup_cache_size: int = 50_000,
        log_offered_actions: bool = True,
    ) -> None:
        if configuration is not None and not isinstance(configuration, Configuration):
            raise TypeError(
                f"configuration must be a Configuration (use Configuration.from_json), got {type(configuration).__name__}"
            )
        if assignment_logger is not None and not callable(getattr(assignment_logger, "log_assignment", None)):
            raise TypeError("assignment_logger needs a log_assignment(event: dict) method")
        if bandit_logger is None and callable(getattr(assignment_logger, "log_bandit_action", None)):
            bandit_logger = assignment_logger
        if bandit_logger is not None and not callable(getattr(bandit_logger, "log_bandit_action", None)):
            raise TypeError("bandit_logger needs a log_bandit_action(event: dict) method")
        self._config = configuration if configuration is not None else Configuration(flags={})
        self._log_assignment = None if assignment_logger is None else assignment_logger.log_assignment
        self._log_bandit = None if bandit_logger is None else bandit_logger.log_bandit_action
        self._assignment_cache = DedupCache(dedup_cache_size)
        self._bandit_cache = DedupCache(dedup_cache_size)
        self._log_offered = bool(log_offered_actions)

    # ------------------------------------------------------------ configuration

    @property
    def configuration(self) -> Configuration:
        return self._config

    def set_configuration(self, configuration: Configuration) -> None:
        """Swap the configuration atomically (build it first with ``Configuration.from_json``:
        a bad one raises there, and this client keeps serving the previous one)."""
        if not isinstance(configuration, Configuration):
            raise TypeError(f"expected a Configuration, got {type(configuration).__name__}")
        self._config = configuration

    # ------------------------------------------------------------ flags

    def get_assignment(
        self,
        flag_key: str,
        subject_key: str,
        subject_attributes: Mapping[str, Any] | Attributes | None = None,
        default: Any = None,
        *,
        variation_type: str | None = None,
    ) -> Any:
        """The flag's typed value for this subject, or ``default``.

        The type expected is the default's (bool/int/float/str/dict|list) or ``variation_type``;
        a flag of another type returns the default (TYPE_MISMATCH in the details).
        """
        expected = _EXPECTED.get(default.__class__) if variation_type is None else \
            _expected_types(default, variation_type)
        return self._evaluate(self._config, flag_key, subject_key, subject_attributes, default, expected)[0]

    def get_assignment_details(
        self,
        flag_key: str,
        subject_key: str,
        subject_attributes: Mapping[str, Any] | Attributes | None = None,
        default: Any = None,
        *,
        variation_type: str | None = None,
    ) -> AssignmentDetails:
        """Like :meth:`get_assignment`, with the evaluation details (codes, allocations, rule)."""
        return self._evaluate(self._config, flag_key, subject_key, subject_attributes, default,
                              _expected_types(default, variation_type), [])[2]

    def get_assignments(
        self,
        flag_key: str,
        subjects: Mapping[str, Any] | Iterable[tuple[str, Any]],
        default: Any = None,
        *,
        variation_type: str | None = None,
    ) -> list[Any]:
        """:meth:`get_assignment` for many subjects (``{key: attributes}`` or ``(key, attributes)``
        pairs); same results and events, in order (the events of one call share its timestamp).
        Never raises: a subject that cannot be evaluated gets the default (the reason is in
        :meth:`get_assignments_details`). Large audiences are hashed in bulk (numpy)."""
        return [r[0] for r in self._evaluate_many(self._config, flag_key, _items(subjects), default,
                                                  _expected_types(default, variation_type), False)]

    def get_assignments_details(
        self,
        flag_key: str,
        subjects: Mapping[str, Any] | Iterable[tuple[str, Any]],
        default: Any = None,
        *,
        variation_type: str | None = None,
    ) -> list[AssignmentDetails]:
        """:meth:`get_assignment_details` for many subjects: one :class:`AssignmentDetails` each,
        with the reason for every default."""
        return [r[2] for r in self._evaluate_many(self._config, flag_key, _items(subjects), default,
                                                  _expected_types(default, variation_type), True)]

    def _evaluate_many(self, cfg: Configuration, flag_key: str, items: list[tuple[Any, Any]], default: Any,
                       expected: tuple[str, ...] | None, details: bool, stamp: str | None = None) -> list[tuple]:
        """:meth:`_evaluate` per subject, sharing one timestamp. For a large audience the first
        :data:`SAMPLE` subjects show which salts most subjects reach; those are then hashed for
        everyone at once (``sortition.serving.md5_batch``) and handed to the same walk."""
        if stamp is None and (self._log_assignment is not None or self._log_bandit is not None):
            stamp = now_rfc3339()
        evaluate = self._evaluate
        flag = cfg.get_flag(flag_key) if isinstance(flag_key, str) else None
        if flag is None or not flag.salts or len(items) < MIN_VECTOR:
            return [evaluate(cfg, flag_key, k, a, default, expected, [] if details else None, stamp)
                    for k, a in items]
        width = len(flag.salts)
        sample_rows = [[-1] * width for _ in range(SAMPLE)]
        out = [evaluate(cfg, flag_key, k, a, default, expected, [] if details else None, stamp, row)
               for (k, a), row in zip(items[:SAMPLE], sample_rows)]
        reached = [sum(row[j] >= 0 for row in sample_rows) for j in range(width)]
        hot = [j for j in range(width) if reached[j] * 2 > SAMPLE]  # salts most subjects are hashed under
        rest = items[SAMPLE:]
        columns = _bulk_shards(flag, [k for k, _ in rest], hot) if hot else None
        if columns is None:
            out.extend(evaluate(cfg, flag_key, k, a, default, expected, [] if details else None, stamp)
                       for k, a in rest)
            return out
        blank = [-1] * width
        for i, (k, a) in enumerate(rest):
            row = blank.copy()
            for j, column in columns:
                row[j] = column[i]
            out.append(evaluate(cfg, flag_key, k, a, default, expected, [] if details else None, stamp, row))
        return out

    def _evaluate(self, cfg: Configuration, flag_key: str, subject_key: Any, subject_attributes: Any,
                  default: Any, expected: tuple[str, ...] | None, trace: list | None = None,
                  stamp: str | None = None, shards: list[int] | None = None) -> tuple[Any, str | None, Any]:
        """The one flag evaluation: ``(value, matched variation key or None, details)``.

        ``details`` is an :class:`AssignmentDetails` when ``trace`` is a list (which collects the
        allocations that did not match), else ``None`` on a match and ``(code, description)`` on
        a default. Logs the assignment event when the allocation has ``doLog``. Never raises.
        """
        try:
            flag = cfg.flags.get(flag_key) if not cfg.obfuscated else cfg.get_flag(flag_key)
            if flag is None or not flag.enabled:
                return _default(cfg, default, flag_key, subject_key, trace, FLAG_UNRECOGNIZED_OR_DISABLED,
                                f"Unrecognized or disabled flag: {flag_key}")
            if expected is not None and flag.variation_type not in expected:
                message = (f"Variation value does not have the correct type. Found {flag.variation_type}, "
                           f"but expected {expected[0]} for flag {flag_key}")
                logger.warning("sortition: %s", message)
                return _default(cfg, default, flag_key, subject_key, trace, TYPE_MISMATCH, message)
            if subject_key.__class__ is not str and not isinstance(subject_key, str):
                raise BadRequest(f"subject_key must be a string, got {type(subject_key).__name__}")
            attributes = subject_attributes if subject_attributes.__class__ is dict else _flat(subject_attributes)
            found = match_flag(flag, subject_key, hash_attribute_names(attributes) if cfg.obfuscated else attributes,
                               time() if flag.timed else 0.0, trace, shards)
            if found is None:
                return _default(cfg, default, flag_key, subject_key, trace, DEFAULT_ALLOCATION_NULL,
                                'No allocations matched. Falling back to "Default Allocation", serving NULL')
            position, alloc, split, rule = found
            variation = split.variation
            if variation is None or variation.error is not None:
                error = (f"Variation ({split.variation_key}) is not among the flag's variations" if variation is None
                         else f"Variation ({variation.key}) {variation.error}")
                logger.warning("sortition: flag %r: %s; serving the default", flag_key, error)
                if trace is None:
                    return default, None, (ASSIGNMENT_ERROR, error)
                return default, None, _match_details(cfg, flag_key, flag, default, subject_key, found, trace,
                                                     ASSIGNMENT_ERROR, error)
            value = variation.value
            if value.__class__ is dict or value.__class__ is list:
                value = _serve(variation)
            if alloc.do_log and self._log_assignment is not None:
                self._emit_assignment(flag_key, alloc, split, variation.key, subject_key, attributes, stamp)
            if trace is None:
                return value, variation.key, None
            return value, variation.key, _match_details(cfg, flag_key, flag, value, subject_key, found, trace,
                                                        MATCH, None)
        except (BadRequest, UnicodeEncodeError) as exc:
            reason = str(exc) if isinstance(exc, BadRequest) else \
                f"subject_key must be a valid Unicode string, got {subject_key!r} (a lone surrogate)"
            _report_failure("sortition: flag %r, subject %r: %s; serving the default", flag_key, subject_key,
                            reason, traceback=False)
            return _default(cfg, default, flag_key, subject_key, trace, ASSIGNMENT_ERROR, reason)
        except Exception as exc:  # noqa: BLE001 - request-time evaluation never raises
            _report_failure("sortition: evaluating flag %r for %r failed; serving the default", flag_key, subject_key)
            return _default(cfg, default, flag_key, subject_key, trace, ASSIGNMENT_ERROR,
                            f"evaluation failed: {exc!r}")

    def _emit_assignment(self, flag_key, alloc, split, variation_key, subject_key, attributes,
                         timestamp: str | None = None) -> None:
        key = (flag_key, subject_key)
        value = (alloc.key, variation_key)
        cache = self._assignment_cache
        if not cache.should_log(key, value):
            return
        logged = dict(attributes)
        for k in logged:
            if k.__class__ is not str:  # JSON keys are strings: leave out names that are not
                logged = {k: v for k, v in logged.items() if isinstance(k, str)}
                break
        event = assignment_event(flag_key, alloc.key, variation_key, subject_key, logged,
                                 split.extra_logging, timestamp)
        if not safe_log(self._log_assignment, event):
            cache.forget(key, value)

    # ------------------------------------------------------------ bandits

    def get_bandit_action(
        self,
        flag_key: str,
        subject_key: str,
        subject_attributes: Mapping[str, Any] | Attributes | None,
        actions: Mapping[str, Mapping[str, Any] | Attributes | None] | Iterable[str] | None,
        default: str,
    ) -> BanditResult:
        """The flag's (string) variation and, when it is linked to a bandit with a model and
        ``actions`` is not empty, the action chosen for this subject."""
        return self._bandit(self._config, flag_key, subject_key, subject_attributes, actions, default, False)

    def get_bandit_action_details(self, flag_key, subject_key, subject_attributes, actions, default) -> BanditResult:
        """:meth:`get_bandit_action` with ``.details`` (an :class:`AssignmentDetails`) filled in."""
        return self._bandit(self._config, flag_key, subject_key, subject_attributes, actions, default, True)

    def _bandit(self, cfg, flag_key, subject_key, subject_attributes, actions, default, want_details) -> BanditResult:
        stamp = now_rfc3339() if self._log_bandit is not None or self._log_assignment is not None else None
        value, variation_key, details = self._evaluate(cfg, flag_key, subject_key, subject_attributes, default,
                                                       _STRING, [] if want_details else None, stamp)
        if not want_details:
            details = None
        if variation_key is None or not actions:
            return BanditResult(value, None, details)
        try:
            link = cfg.bandit_link(flag_key, value)
            model = None if link is None else cfg.bandits.get(link.bandit_key)
            if model is None:
                if link is not None:
                    logger.warning("sortition: no model for bandit %r (flag %r); serving no action",
                                   link.bandit_key, flag_key)
                return BanditResult(value, None, details)
            action_map = _actions(actions)
            if not action_map:
                return BanditResult(value, None, details)
            evaluation = evaluate_bandit(flag_key, subject_key, subject_attributes, action_map, model)
            if self._log_bandit is not None:
                self._emit_bandit(link.bandit_key, model.model_version or link.model_version, evaluation, stamp,
                                  subject_attributes, action_map, None)
            if details is not None:
                details = replace(details, bandit_key=link.bandit_key, bandit_action=evaluation.action_key)
            return BanditResult(value, evaluation.action_key, details, evaluation)
        except Exception as exc:  # noqa: BLE001 - the variation stands; only the action is lost
            _report_failure("sortition: choosing a bandit action for flag %r, subject %r failed (%s); "
                            "serving the variation without an action", flag_key, subject_key, exc,
                            traceback=not isinstance(exc, BadRequest))
            return BanditResult(value, None, details)

    def _emit_bandit(self, bandit_key: str, model_version: str | None, e: BanditEvaluation, timestamp: str | None,
                     subject_attributes: Any, actions: Mapping[str, Any],
                     offered: dict[str, tuple[dict, dict]] | None) -> None:
        """Log ``e`` unless already logged. ``offered``: every offered action's cleaned groups when
        a batch computed them once for all its events (copied here); ``None``: cleaned here, for
        this event alone."""
        key = (e.flag_key, e.subject_key)
        value = (bandit_key, e.action_key)
        cache = self._bandit_cache
        if not cache.should_log(key, value):
            return
        subject_numeric, subject_categorical = clean_groups(subject_attributes)
        offered_field = None
        if offered is not None:
            action_numeric, action_categorical = offered[e.action_key]
            action_numeric, action_categorical = dict(action_numeric), dict(action_categorical)
            if self._log_offered:
                offered_field = offered_event_field(offered)
        elif self._log_offered:  # built for this event alone: no second copy
            offered_field = {}
            for k, attributes in actions.items():
                numeric, categorical = clean_groups(attributes)
                offered_field[k] = {"numericAttributes": numeric, "categoricalAttributes": categorical}
            chosen = offered_field[e.action_key]
            action_numeric = dict(chosen["numericAttributes"])
            action_categorical = dict(chosen["categoricalAttributes"])
        else:
            action_numeric, action_categorical = clean_groups(actions[e.action_key])
        event = bandit_event(e.flag_key, bandit_key, e.subject_key, e.action_key, e.action_weight,
                             e.optimality_gap, model_version, subject_numeric, subject_categorical,
                             action_numeric, action_categorical, timestamp, offered_field)
        if not safe_log(self._log_bandit, event):
            cache.forget(key, value)

    def get_bandit_actions(
        self,
        flag_key: str,
        subjects: Mapping[str, Any] | Iterable[tuple[str, Any]],
        actions: Mapping[str, Any] | Iterable[str],
        default: str,
    ) -> list[BanditResult]:
        """:meth:`get_bandit_action` for many subjects sharing one action set, scored together
        (numpy); results and events identical to the single call, in the subjects' order (the
        events of one call share its timestamp). Never raises: a subject served the default
        because of an error carries ``details`` with the reason."""
        cfg = self._config
        items = _items(subjects)
        stamp = now_rfc3339() if self._log_bandit is not None or self._log_assignment is not None else None
        assigned = self._evaluate_many(cfg, flag_key, items, default, _STRING, False, stamp)
        results = [BanditResult(v, None, _error_details(cfg, default, flag_key, k, reason))
                   for (v, _, reason), (k, _a) in zip(assigned, items)]
        if not items or not actions:
            return results
        try:
            action_map = _actions(actions)
        except BadRequest as exc:
            _report_failure("sortition: get_bandit_actions(%r): %s; serving no actions", flag_key, exc,
                            traceback=False)
            return results
        if not action_map:
            return results
        groups: dict[str, list[int]] = {}
        links: dict[Any, Any] = {}  # variation value -> link (few distinct values)
        for i, (value, variation_key, _) in enumerate(assigned):
            if variation_key is None:
                continue
            link = links.get(value, _MISSING)
            if link is _MISSING:
                link = links[value] = cfg.bandit_link(flag_key, value)
            if link is not None:
                groups.setdefault(link.bandit_key, []).append(i)
        offered = offered_groups(action_map) if self._log_bandit is not None else None
        versions = {link.bandit_key: link.model_version for link in links.values() if link is not None}
        for bandit_key, idx in groups.items():
            model = cfg.bandits.get(bandit_key)
            if model is None:
                logger.warning("sortition: no model for bandit %r (flag %r); serving no action", bandit_key, flag_key)
                continue
            evaluations = self._evaluate_bandits(flag_key, [items[i] for i in idx], action_map, model)
            version = model.model_version or versions.get(bandit_key)
            for i, e in zip(idx, evaluations):
                if e is None:
                    continue
                results[i] = BanditResult(results[i].variation, e.action_key, None, e)
                if offered is not None:
                    try:
                        self._emit_bandit(bandit_key, version, e, stamp, items[i][1], action_map, offered)
                    except Exception:  # noqa: BLE001
                        _report_failure("sortition: logging a bandit event for %r failed", items[i][0])
        return results

    def _evaluate_bandits(self, flag_key: str, items: list[tuple[Any, Any]], actions: dict[str, Any],
                          model: Any) -> list[BanditEvaluation | None]:
        """One evaluation per subject (``None`` where it failed): numpy for many subjects, the
        scalar evaluator for few or when the vectorized pass fails."""
        if len(items) >= MIN_BANDIT_VECTOR:
            try:
                from sortition.serving.batch import evaluate_many  # numpy only when batching

                return list(evaluate_many(flag_key, [k for k, _ in items], [a for _, a in items], actions, model))
            except Exception:  # noqa: BLE001 - fall back subject by subject, so one bad subject costs only itself
                _report_failure("sortition: batch scoring for flag %r failed; scoring subject by subject", flag_key)
        out: list[BanditEvaluation | None] = []
        for key, attributes in items:
            try:
                out.append(evaluate_bandit(flag_key, key, attributes, actions, model))
            except Exception:  # noqa: BLE001
                _report_failure("sortition: bandit scoring for flag %r, subject %r failed", flag_key, key)
                out.append(None)
        return out

    # ------------------------------------------------------------ columnar (sortition.serving.columnar)

    def assign_table(self, flag_key: str, table: Any, *, subject: str = "subject", default: Any = None,
                     variation_type: str | None = None, chunk_size: int | None = None,
                     with_events: bool = False) -> Any:
        """:meth:`get_assignment` for every row of a table (pandas DataFrame or pyarrow Table;
        polars through Arrow), each row's other columns being the subject's attributes (nulls and
        NaN missing). Returns a pyarrow Table of the same length: ``subject, variation,
        variation_key, allocation, default_reason``; with ``with_events`` also the assignment
        events (an Arrow table), which go to the assignment logger's ``log_assignments(table)``
        when it has one. Raises ``ValueError`` for a subject column the table lacks."""
        from sortition.serving.columnar import DEFAULT_CHUNK_SIZE, assign_table

        return assign_table(self._config, flag_key, table, subject=subject, default=default,
                            expected=_expected_types(default, variation_type),
                            chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                            table_logger=_table_method(self._log_assignment, "log_assignments"),
                            with_events=with_events)

    def bandit_table(self, flag_key: str, table: Any, actions: Mapping[str, Any] | Iterable[str], *,
                     subject: str = "subject", default: str = "", chunk_size: int | None = None,
                     with_events: bool = False) -> Any:
        """:meth:`get_bandit_action` for every row of a table, one action set for all rows.
        Returns a pyarrow Table: ``subject, variation, variation_key, allocation, bandit, action,
        action_probability, action_score, optimality_gap, default_reason``; with ``with_events``
        also (assignment events, bandit events) as Arrow tables, which go to the loggers'
        ``log_assignments(table)`` / ``log_bandit_actions(table)`` when they have them."""
        from sortition.serving.columnar import DEFAULT_CHUNK_SIZE, bandit_table

        return bandit_table(self._config, flag_key, table, actions, subject=subject, default=default,
                            chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                            assignment_logger=_table_method(self._log_assignment, "log_assignments"),
                            bandit_logger=_table_method(self._log_bandit, "log_bandit_actions"),
                            with_events=with_events, log_offered=self._log_offered)


_MISSING = object()


def _bulk_shards(flag: Flag, keys: list[Any], salt_indices: list[int]) -> list[tuple[int, list[int]]] | None:
    """``(salt index, every key's shard under that salt)`` for the given salts, hashed in bulk
    (numpy); ``None`` when some key is not a string or cannot be encoded (then each subject is
    hashed alone, and refused alone)."""
    if not all(k.__class__ is str for k in keys):
        return None
    from sortition.serving.md5_batch import shards as bulk_shards  # numpy only when batching

    try:
        return [(j, bulk_shards([f"{flag.salts[j]}-{k}" for k in keys], flag.total_shards).tolist())
                for j in salt_indices]
    except UnicodeEncodeError:
        return None


def _default(cfg: Configuration, default: Any, flag_key: Any, subject_key: Any, trace: list | None, code: str,
             description: str) -> tuple[Any, None, Any]:
    """``(default, None, details or (code, description))`` for a call that serves the default."""
    if trace is None:
        return default, None, (code, description)
    unmatched = tuple(AllocationDetail(k, c, i + 1) for i, k, c in trace) if code == DEFAULT_ALLOCATION_NULL else ()
    return default, None, AssignmentDetails(default, flag_key, subject_key, code, description,
                                            unmatched_allocations=unmatched, environment_name=cfg.environment)


def _error_details(cfg: Configuration, default: Any, flag_key: Any, subject_key: Any,
                   reason: Any) -> AssignmentDetails | None:
    """Details for a batch subject served the default because of an error (else ``None``)."""
    if reason is None or reason[0] != ASSIGNMENT_ERROR:
        return None
    return AssignmentDetails(default, flag_key, subject_key, ASSIGNMENT_ERROR, reason[1],
                             environment_name=cfg.environment)


def _match_details(cfg: Configuration, flag_key: str, flag: Flag, value: Any, subject_key: str, found: tuple,
                   trace: list, code: str, error: str | None) -> AssignmentDetails:
    """Details for a call that reached an allocation (``code`` MATCH, or ASSIGNMENT_ERROR when
    the variation does not fit the flag's type)."""
    position, alloc, split, rule = found
    variation = split.variation
    if error is not None:
        description = error
    elif rule is not None and alloc.describes_traffic:
        description = (f'Supplied attributes match rules defined in allocation "{alloc.key}" and '
                       f'{subject_key} belongs to the range of traffic assigned to "{variation.key}".')
    elif rule is not None:
        description = f'Supplied attributes match rules defined in allocation "{alloc.key}".'
    else:
        description = (f'{subject_key} belongs to the range of traffic assigned to "{variation.key}" '
                       f'defined in allocation "{alloc.key}".')
    if variation is None:
        shown = None
    else:
        shown = variation.raw if variation.error or not isinstance(variation.value, (dict, list)) else variation.value
    return AssignmentDetails(
        value, flag_key, subject_key, code, description,
        variation_key=split.variation_key,
        variation_value=copy.deepcopy(shown),
        matched_rule=None if rule is None else copy.deepcopy(dict(rule.raw)),
        matched_allocation=AllocationDetail(alloc.key, MATCH, position + 1),
        unmatched_allocations=tuple(AllocationDetail(k, c, i + 1) for i, k, c in trace),
        unevaluated_allocations=tuple(
            AllocationDetail(a.key, UNEVALUATED, a.position + 1) for a in flag.allocations[position + 1:]
        ),
        environment_name=cfg.environment,
    )


_failures = 0


def _report_failure(message: str, *args: Any, traceback: bool = True) -> None:
    """Log an evaluation failure (with its traceback unless a refused request): the 1st, 2nd,
    4th, 8th... (no floods)."""
    global _failures
    _failures += 1
    if _failures & (_failures - 1) == 0:
        log = logger.exception if traceback else logger.warning
        log(message + " (%d evaluation failures so far)", *args, _failures)


def _table_method(per_event: Any, name: str) -> Any:
    """The table-accepting method (``name``) of the logger behind a bound per-event method, if any."""
    method = getattr(getattr(per_event, "__self__", None), name, None)
    return method if callable(method) else None
