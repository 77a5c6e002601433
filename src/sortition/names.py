"""The one "did you mean" helper: every refusal of a name suggests the nearest valid one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(value: object, choices: Iterable[object], cutoff: float = 0.6) -> str | None:
    """The choice nearest to ``value`` (``difflib`` ratio >= ``cutoff``; case folded first), or None."""
    names = [str(c) for c in choices]
    text = str(value)
    folded = {n.casefold(): n for n in names}
    if text.casefold() in folded and folded[text.casefold()] != text:
        return folded[text.casefold()]  # only the case differs: always the suggestion
    hit = difflib.get_close_matches(text.casefold(), list(folded), n=1, cutoff=cutoff)
    return folded[hit[0]] if hit else None


def did_you_mean(value: object, choices: Iterable[object]) -> str:
    """``" (did you mean 'x'?)"`` for the nearest choice, or ``""`` when none is close."""
    hit = closest(value, choices)
    return "" if hit is None or hit == str(value) else f" (did you mean {hit!r}?)"


def listing(choices: Iterable[object], limit: int = 12) -> str:
    """Names for a message: ``'a', 'b', 'c'`` (at most ``limit``, then how many more)."""
    names = [str(c) for c in choices]
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return (shown + more) if names else "none"
