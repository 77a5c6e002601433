"""Refusals shared by the commands that read an event store: a metric or flag with no events.

Each raises ValueError naming the value, what exists, and the nearest valid name, before anything
is written, so a typo never turns into a confident plan computed from zeros.
"""

from __future__ import annotations

from typing import Any

from sortition.names import did_you_mean, listing


def require_metric(store: Any, metric: str) -> None:
    """``metric`` must have outcome events in ``store`` (else its outcomes would all read as 0)."""
    metrics = store.metrics()
    if metric in metrics:
        return
    if not metrics:
        raise ValueError(
            f"the event store has no outcome events at all, so metric {metric!r} would be 0 for everyone; "
            "log outcomes (subject, metric, value, timestamp) to the store first"
        )
    raise ValueError(
        f"metric {metric!r} has no outcome events in the store{did_you_mean(metric, metrics)}; metrics with "
        f"outcomes: {listing(metrics)}"
    )


def require_flag(store: Any, flag: str, *, bandit: bool = False) -> None:
    """``flag`` must have logged events in ``store``: assignments, or bandit decisions (``bandit``)."""
    flags = store.bandit_flag_keys() if bandit else store.flag_keys()
    if flag in flags:
        return
    what = "bandit decisions" if bandit else "exposures (assignment events)"
    raise ValueError(
        f"flag {flag!r} has no {what} in the store{did_you_mean(flag, flags)}; flags with {what.split(' (')[0]}: "
        f"{listing(flags)}"
    )


def refuse_near_flag(flag: str, known: list[str], *, allow_new: bool) -> None:
    """Creating an experiment for ``flag`` beside ``known`` flags: refuse a key that looks like a
    typo of one of them (it would quietly add a second flag to the next configuration)."""
    if allow_new or flag in known:
        return
    hint = did_you_mean(flag, known)
    if hint:
        raise ValueError(
            f"flag {flag!r} is new to the store, whose configuration and exposures have flags {listing(known)}"
            f"{hint}; creating it would add a second flag beside them. Fix --flag, or pass --new-flag to "
            "create it anyway"
        )
