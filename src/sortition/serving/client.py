"""``Client``: request-time flag assignments and bandit actions over a swappable Configuration.

Every evaluation reads the configuration reference once, so a concurrent
:meth:`Client.set_configuration` is seen whole or not at all. Evaluations never raise: a
problem returns the default, and is reported in the details and through ``logging``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping
from time import time
from typing import Any

from sortition.serving.attributes import Attributes
from sortition.serving.bandits import BanditEvaluation, evaluate_bandit
from sortition.serving.configuration import Configuration
from sortition.serving.evaluation import UNEVALUATED, hash_attribute_names, match_flag, match_flag_many
from sortition.serving.events import (
    DedupCache,
    assignment_event,
    bandit_event,
    now_rfc3339,
    offered_event_field,
    offered_groups,
    safe_log,
)
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


def _expected_types(default: Any, variation_type: str | None) -> tuple[str, ...] | None:
    if variation_type is not None:
        return (variation_type.upper(),)
    if default is None:
        return None
    return _EXPECTED.get(type(default))


def _flat(subject_attributes: Any) -> Mapping[str, Any]:
    if subject_attributes.__class__ is dict:
        return subject_attributes
    if subject_attributes is None:
        return {}
    if isinstance(subject_attributes, Attributes):
        return subject_attributes.flat()
    if isinstance(subject_attributes, Mapping):
        return subject_attributes
    raise TypeError(f"subject_attributes must be a dict or Attributes, got {type(subject_attributes).__name__}")


def _serve(variation: Any) -> Any:
    raw = variation.raw
    if isinstance(variation.value, (dict, list)):  # JSON: a fresh object each call
        return json.loads(raw) if isinstance(raw, str) else copy.deepcopy(variation.value)
    return variation.value


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
        try:
            cfg = self._config
            flag = cfg.flags.get(flag_key) if not cfg.obfuscated else cfg.get_flag(flag_key)
            if flag is None or not flag.enabled:
                return default
            expected = _EXPECTED.get(default.__class__) if variation_type is None else (variation_type.upper(),)
            attributes = subject_attributes if subject_attributes.__class__ is dict else _flat(subject_attributes)
            if (expected is not None and flag.variation_type not in expected) or cfg.obfuscated:
                return self._assign(cfg, flag_key, subject_key, attributes, default, expected, None)[0]
            found = match_flag(flag, subject_key, attributes, time() if flag.timed else 0.0, None)
            if found is None:
                return default
            alloc, split = found[1], found[2]
            variation = flag.variations.get(split.variation_key)
            if variation is None or variation.error is not None:  # the slow path reports it
                return self._assign(cfg, flag_key, subject_key, attributes, default, expected, None)[0]
            if alloc.do_log and self._log_assignment is not None:
                self._emit_assignment(flag_key, alloc, split, variation.key, subject_key, attributes)
            value = variation.value
            if value.__class__ is dict or value.__class__ is list:
                return _serve(variation)
            return value
        except Exception:  # noqa: BLE001 - request-time evaluation never raises
            _report_failure("sortition: get_assignment(%r, %r) failed; serving the default", flag_key, subject_key)
            return default

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
        try:
            return self._assign(self._config, flag_key, subject_key, _flat(subject_attributes), default,
                                _expected_types(default, variation_type), [])[1]
        except Exception as exc:  # noqa: BLE001
            _report_failure("sortition: get_assignment_details(%r, %r) failed", flag_key, subject_key)
            return AssignmentDetails(default, flag_key, subject_key, ASSIGNMENT_ERROR, f"evaluation failed: {exc!r}")

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
        The flag is walked once for the whole audience (rules condition by condition, one bulk
        md5 pass per shard salt, vectorized with numpy for large audiences)."""
        items = list(subjects.items() if isinstance(subjects, Mapping) else subjects)
        try:
            expected = _expected_types(default, variation_type)
            return [v for v, _ in self._assign_many(self._config, flag_key, items, default, expected)]
        except Exception:  # noqa: BLE001
            _report_failure("sortition: get_assignments(%r) failed; serving subject by subject", flag_key)
            return [self.get_assignment(flag_key, k, a, default, variation_type=variation_type) for k, a in items]

    def _assign_many(self, cfg, flag_key, items, default, expected, timestamp: str | None = None
                     ) -> list[tuple[Any, str | None]]:
        """(value, matched variation key or None) per (subject_key, attributes) pair; the same
        as :meth:`_assign` subject by subject, with the flag walked once for all of them."""
        flag = cfg.get_flag(flag_key)
        if flag is None or not flag.enabled or (expected is not None and flag.variation_type not in expected):
            return [self._assign(cfg, flag_key, k, _flat(a), default, expected, None)[::2] for k, a in items]
        keys = [k for k, _ in items]
        flat = [_flat(a) for _, a in items]
        rule_attrs = [hash_attribute_names(a) for a in flat] if cfg.obfuscated else flat
        found = match_flag_many(flag, keys, rule_attrs, time() if flag.timed else 0.0)
        out: list[tuple[Any, str | None]] = []
        append = out.append
        log = self._log_assignment is not None
        stamp = (timestamp or now_rfc3339()) if log else None  # one timestamp for the whole call
        variations = flag.variations
        for i, m in enumerate(found):
            if m is None:
                append((default, None))
                continue
            alloc, split = m
            variation = variations.get(split.variation_key)
            if variation is None or variation.error is not None:  # the single path reports it
                append(self._assign(cfg, flag_key, keys[i], flat[i], default, expected, None)[::2])
                continue
            if log and alloc.do_log:
                self._emit_assignment(flag_key, alloc, split, variation.key, keys[i], flat[i], stamp)
            value = variation.value
            append((_serve(variation) if value.__class__ is dict or value.__class__ is list else value,
                    variation.key))
        return out

    def _assign(self, cfg, flag_key, subject_key, attributes, default, expected, trace):
        """(value, details or None, matched variation key or None). ``trace`` is a list to
        collect details, or ``None`` on the lean path."""
        flag = cfg.flags.get(flag_key) if not cfg.obfuscated else cfg.get_flag(flag_key)
        if flag is None or not flag.enabled:
            if trace is None:
                return default, None, None
            return default, AssignmentDetails(
                default, flag_key, subject_key, FLAG_UNRECOGNIZED_OR_DISABLED,
                f"Unrecognized or disabled flag: {flag_key}", environment_name=cfg.environment,
            ), None
        if expected is not None and flag.variation_type not in expected:
            message = (f"Variation value does not have the correct type. Found {flag.variation_type}, "
                       f"but expected {expected[0]} for flag {flag_key}")
            logger.warning("sortition: %s", message)
            if trace is None:
                return default, None, None
            return default, AssignmentDetails(default, flag_key, subject_key, TYPE_MISMATCH, message,
                                              environment_name=cfg.environment), None
        rule_attrs = hash_attribute_names(attributes) if cfg.obfuscated else attributes
        found = match_flag(flag, subject_key, rule_attrs, time() if flag.timed else 0.0, trace)
        if found is None:
            if trace is None:
                return default, None, None
            return default, AssignmentDetails(
                default, flag_key, subject_key, DEFAULT_ALLOCATION_NULL,
                'No allocations matched. Falling back to "Default Allocation", serving NULL',
                unmatched_allocations=tuple(AllocationDetail(k, c, i + 1) for i, k, c in trace),
                environment_name=cfg.environment,
            ), None
        position, alloc, split, rule = found
        variation = flag.variations.get(split.variation_key)
        error = None
        if variation is None:
            error = f"Variation ({split.variation_key}) is not among the flag's variations"
        elif variation.error is not None:
            error = f"Variation ({variation.key}) {variation.error}"
        if error is not None:
            logger.warning("sortition: flag %r: %s; serving the default", flag_key, error)
            value = default
        else:
            value = _serve(variation)
            if alloc.do_log and self._log_assignment is not None:
                self._emit_assignment(flag_key, alloc, split, variation.key, subject_key, attributes)
        if trace is None:
            return value, None, (None if error else variation.key)
        if error is not None:
            code, description = ASSIGNMENT_ERROR, error
        else:
            code = MATCH
            if rule is not None and alloc.describes_traffic:
                description = (f'Supplied attributes match rules defined in allocation "{alloc.key}" and '
                               f'{subject_key} belongs to the range of traffic assigned to "{variation.key}".')
            elif rule is not None:
                description = f'Supplied attributes match rules defined in allocation "{alloc.key}".'
            else:
                description = (f'{subject_key} belongs to the range of traffic assigned to "{variation.key}" '
                               f'defined in allocation "{alloc.key}".')
        details = AssignmentDetails(
            value, flag_key, subject_key, code, description,
            variation_key=split.variation_key,
            variation_value=None if variation is None else copy.deepcopy(variation.raw if variation.error or not isinstance(variation.value, (dict, list)) else variation.value),
            matched_rule=None if rule is None else copy.deepcopy(dict(rule.raw)),
            matched_allocation=AllocationDetail(alloc.key, MATCH, position + 1),
            unmatched_allocations=tuple(AllocationDetail(k, c, i + 1) for i, k, c in trace),
            unevaluated_allocations=tuple(
                AllocationDetail(a.key, UNEVALUATED, j + 1)
                for j, a in enumerate(flag.allocations) if j > position
            ),
            environment_name=cfg.environment,
        )
        return value, details, (None if error else variation.key)

    def _emit_assignment(self, flag_key, alloc, split, variation_key, subject_key, attributes,
                         timestamp: str | None = None) -> None:
        key = (flag_key, subject_key)
        value = (alloc.key, variation_key)
        cache = self._assignment_cache
        if not cache.should_log(key, value):
            return
        event = assignment_event(flag_key, alloc.key, variation_key, subject_key, dict(attributes),
                                 dict(split.extra_logging), timestamp)
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
        try:
            value, details, variation_key = self._assign(
                cfg, flag_key, subject_key, _flat(subject_attributes), default, _STRING, [] if want_details else None
            )
            evaluation = None
            if variation_key is not None and actions:
                link = cfg.bandit_link(flag_key, value)
                model = None if link is None else cfg.bandits.get(link.bandit_key)
                if model is not None:
                    action_map = _actions(actions)
                    evaluation = evaluate_bandit(flag_key, subject_key, subject_attributes, action_map, model)
                    if self._log_bandit is not None:
                        version = model.model_version or link.model_version
                        self._emit_bandit(link.bandit_key, version, evaluation, actions=action_map)
                    if details is not None:
                        details = _with_bandit(details, link.bandit_key, evaluation.action_key)
                elif link is not None:
                    logger.warning("sortition: no model for bandit %r (flag %r); serving no action",
                                   link.bandit_key, flag_key)
            if evaluation is None:
                return BanditResult(value, None, details)
            return BanditResult(value, evaluation.action_key, details, evaluation)
        except Exception as exc:  # noqa: BLE001
            _report_failure("sortition: get_bandit_action(%r, %r) failed; serving the default", flag_key, subject_key)
            details = AssignmentDetails(default, flag_key, subject_key, ASSIGNMENT_ERROR,
                                        f"evaluation failed: {exc!r}") if want_details else None
            return BanditResult(default, None, details)

    def _emit_bandit(self, bandit_key: str, model_version: str | None, e: BanditEvaluation,
                     timestamp: str | None = None, action_groups: tuple[dict, dict] | None = None,
                     actions: Mapping[str, Any] | None = None,
                     offered: dict[str, tuple[dict, dict]] | None = None) -> None:
        """Log ``e`` unless already logged. A batch passes one ``timestamp`` for the call, the
        action's cleaned (numeric, categorical) groups and every offered action's (``offered``),
        computed once per call (copied here); a single call passes the raw ``actions``."""
        if self._log_bandit is None:
            return
        key = (e.flag_key, e.subject_key)
        value = (bandit_key, e.action_key)
        cache = self._bandit_cache
        if not cache.should_log(key, value):
            return
        s = Attributes.coerce(e.subject_attributes)
        if action_groups is None:
            a = Attributes.coerce(e.action_attributes)
            action_numeric, action_categorical = a.numeric_clean(), a.categorical_clean()
        else:
            action_numeric, action_categorical = dict(action_groups[0]), dict(action_groups[1])
        offered_field = None
        if self._log_offered:
            if offered is None and actions is not None:
                offered = offered_groups(actions)
            offered_field = None if offered is None else offered_event_field(offered)
        event = bandit_event(e.flag_key, bandit_key, e.subject_key, e.action_key, e.action_weight,
                             e.optimality_gap, model_version, s.numeric_clean(), s.categorical_clean(),
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
        events of one call share its timestamp)."""
        from sortition.serving.batch import bandit_batch  # numpy only when batching

        return bandit_batch(self, self._config, flag_key, subjects, actions, default)


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


_failures = 0


def _report_failure(message: str, *args: Any) -> None:
    """Log an evaluation failure with its traceback: the 1st, 2nd, 4th, 8th... (no floods)."""
    global _failures
    _failures += 1
    if _failures & (_failures - 1) == 0:
        logger.exception(message + " (%d evaluation failures so far)", *args, _failures)


def _actions(actions: Any) -> dict[str, Any]:
    if actions.__class__ is dict or isinstance(actions, Mapping):
        return actions
    if isinstance(actions, str):
        raise TypeError("actions must be a dict {action_key: attributes} or a list of action keys, not a string")
    return {key: None for key in actions}


def _with_bandit(details: AssignmentDetails, bandit_key: str, action: str | None) -> AssignmentDetails:
    from dataclasses import replace

    return replace(details, bandit_key=bandit_key, bandit_action=action)


def _table_method(per_event: Any, name: str) -> Any:
    """The table-accepting method (``name``) of the logger behind a bound per-event method, if any."""
    method = getattr(getattr(per_event, "__self__", None), name, None)
    return method if callable(method) else None
