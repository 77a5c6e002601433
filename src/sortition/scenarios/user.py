"""A user's scenarios: worlds defined in a Python file (or module) in the library's own form.

A scenario file is written like :mod:`sortition.scenarios.library`: it defines lift functions
``lift(visitors, K) -> (n, K-1)`` (the dimensionless lift of each treatment over control, from the raw
visitor columns of :func:`~sortition.scenarios.covariates.sample_visitors`) and names them in a
module-level dict ``LIFTS = {"name": lift, ...}``; optionally ``SEVERITY_LIFTS`` (revenue order-value
lifts, same form), ``FIXED_ARMS`` (``{"name": ("control", "a", ...)}``) and ``DEFAULT_OUTCOME``
(``{"name": "binary"}``). The functions return effects only; the truth (expected outcomes) and the
observed data are derived from them by :class:`~sortition.scenarios.Scenario`, as for the library, so
ground truth never enters the data.

``module:attr`` names an importable module's lift function (its name is ``attr``) or its ``LIFTS``-style
dict. Every definition is checked on load by calling it on a small sample of visitors.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sortition.data import OUTCOME_KINDS
from sortition.names import did_you_mean
from sortition.scenarios.covariates import sample_visitors
from sortition.scenarios.scenario import LIBRARY, ScenarioDefinition

_CHECK_VISITORS = 64  # visitors each lift is called on at load


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_scenario_file(path: str | Path) -> dict[str, ScenarioDefinition]:
    """The scenarios a Python file defines (its ``LIFTS`` dict and the optional tables), checked.

    ValueError naming the file, the object and what is wrong: a missing file, one that does not run, no
    ``LIFTS`` dict, a name that is not a string or is a library scenario's, a lift that fails or returns
    the wrong shape or non-finite values on a sample of visitors."""
    path = Path(path)
    where = f"scenario file {str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where} does not exist" if not path.exists() else f"{where} is not a file")
    if path.suffix != ".py":
        raise ValueError(f"{where} must be a Python file (.py) defining LIFTS = {{name: lift}}")
    digest = file_digest(path)
    # a fresh module object outside sys.modules: its functions travel to Dask workers by value
    spec = importlib.util.spec_from_file_location(f"sortition_user_scenarios_{digest[:12]}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's code: any error is theirs to see, named
        raise ValueError(f"{where} failed to run: {type(err).__name__}: {err}") from None
    return _definitions(module, where, str(path.resolve()), digest)


def load_scenario_spec(spec: str) -> dict[str, ScenarioDefinition]:
    """The scenarios of ``module:attr`` (an importable module's lift function, named ``attr``, or its
    ``LIFTS``-style dict), checked like a file's."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"scenario {spec!r}: expected module:attr (e.g. my_worlds:steep)")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ValueError(f"scenario {spec!r}: module {module_name!r} cannot be imported: "
                         f"{type(err).__name__}: {err}") from None
    if not hasattr(module, attr):
        public = [n for n in vars(module) if not n.startswith("_")]
        raise ValueError(f"scenario {spec!r}: module {module_name!r} has no "
                         f"{attr!r}{did_you_mean(attr, public)}")
    source = inspect.getsourcefile(module)
    digest = file_digest(source) if source else ""
    value = getattr(module, attr)
    where = f"scenario {spec!r}"
    if isinstance(value, Mapping):
        return _definitions(module, where, spec, digest, lifts=value)
    if not callable(value):
        raise ValueError(f"{where} is a {type(value).__name__}, not a lift function or a LIFTS dict")
    return _definitions(module, where, spec, digest, lifts={attr: value})


def _definitions(module: ModuleType, where: str, source: str, digest: str,
                 lifts: Mapping[str, Any] | None = None) -> dict[str, ScenarioDefinition]:
    if lifts is None:
        lifts = getattr(module, "LIFTS", None)
        if lifts is None:
            raise ValueError(f"{where} defines no LIFTS; add LIFTS = {{'my_world': my_lift}} naming its lift "
                             f"functions lift(visitors, K) -> (n, K-1)")
    if not isinstance(lifts, Mapping) or not lifts:
        raise ValueError(f"{where}: LIFTS must be a non-empty dict of name -> lift function, got "
                         f"{type(lifts).__name__} {lifts!r}"[:200])
    tables = {}
    for table in ("SEVERITY_LIFTS", "FIXED_ARMS", "DEFAULT_OUTCOME"):
        value = getattr(module, table, {}) or {}
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: {table} must be a dict keyed by scenario name, got {type(value).__name__}")
        stray = [k for k in value if k not in lifts]
        if stray:
            raise ValueError(f"{where}: {table} names {stray[0]!r}{did_you_mean(stray[0], list(lifts))}, "
                             "which LIFTS does not define")
        tables[table] = value
    out = {}
    for name, lift in lifts.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{where}: LIFTS key {name!r} must be a name (letters, digits, _)")
        if name in LIBRARY:
            raise ValueError(f"{where}: {name!r} is a library scenario's name; rename yours")
        arms = tables["FIXED_ARMS"].get(name)
        if arms is not None:
            arms = tuple(arms)
            if len(arms) < 2 or len(set(arms)) != len(arms) or not all(isinstance(a, str) for a in arms):
                raise ValueError(f"{where}: FIXED_ARMS[{name!r}] must be at least 2 distinct arm names "
                                 f"(control first), got {arms}")
        outcome = tables["DEFAULT_OUTCOME"].get(name, "continuous")
        if outcome not in OUTCOME_KINDS:
            raise ValueError(f"{where}: DEFAULT_OUTCOME[{name!r}] = {outcome!r} is not an outcome kind "
                             f"{OUTCOME_KINDS}{did_you_mean(outcome, OUTCOME_KINDS)}")
        severity = tables["SEVERITY_LIFTS"].get(name)
        for label, fn in ((f"LIFTS[{name!r}]", lift), (f"SEVERITY_LIFTS[{name!r}]", severity)):
            if fn is not None:
                _check_lift(fn, f"{where}: {label}", (len(arms),) if arms else (2, 3))
        out[name] = ScenarioDefinition(name, lift, severity, arms, outcome, source, digest)
    return out


def _check_lift(fn: Callable, where: str, ks: tuple[int, ...]) -> None:
    """Call ``fn`` on a sample of visitors for each K: it must return finite (n, K-1) numbers."""
    if not callable(fn):
        raise ValueError(f"{where} must be a function lift(visitors, K), got {type(fn).__name__} {fn!r}"[:300])
    visitors = sample_visitors(_CHECK_VISITORS, np.random.default_rng(0))
    for k in ks:
        try:
            value = np.asarray(fn(visitors, k), dtype=np.float64)
        except Exception as err:
            raise ValueError(f"{where} fails on {len(visitors)} sample visitors with K={k}: "
                             f"{type(err).__name__}: {err}") from None
        if value.shape != (len(visitors), k - 1):
            raise ValueError(f"{where} returned shape {value.shape} for {len(visitors)} visitors and K={k}; a "
                             f"lift is (n, K-1) = ({len(visitors)}, {k - 1}): one column per treatment arm")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{where} returned non-finite values (NaN or inf) with K={k}")


def resolve_scenarios(names: list[str] | None, files: list[str | Path] = ()) -> list[ScenarioDefinition]:
    """The definitions a sweep runs: ``names`` are library scenarios, scenarios of ``files``, or
    ``module:attr`` specs; None: the library's default sweep plus every scenario of the files.

    ValueError for an unknown name (with the nearest valid one) or one defined twice."""
    defined: dict[str, ScenarioDefinition] = {}
    for path in files:
        for name, definition in load_scenario_file(path).items():
            if name in defined:
                raise ValueError(f"scenario {name!r} is defined in both {defined[name].source!r} and "
                                 f"{definition.source!r}; rename one")
            defined[name] = definition
    if names is None:
        return [LIBRARY[n] for n in DEFAULT_SWEEP] + list(defined.values())
    out: list[ScenarioDefinition] = []
    for name in names:
        if ":" in name:
            found = list(load_scenario_spec(name).values())
        elif name in LIBRARY:
            found = [LIBRARY[name]]
        elif name in defined:
            found = [defined[name]]
        else:
            known = [*LIBRARY, *defined]
            hint = "" if files else "; a scenario of your own: --scenario-file FILE.py or module:attr"
            raise ValueError(f"unknown scenario {name!r}{did_you_mean(name, known)}; "
                             f"choose from {known}{hint}")
        out += [d for d in found if d not in out]
    return out


DEFAULT_SWEEP = ("homogeneous", "two_segments", "reversal", "multi_winner")
