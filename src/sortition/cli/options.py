"""Option values shared by the commands: durations with a unit, comma lists, the outcome kinds."""

from __future__ import annotations

import re
from typing import Literal

import typer

Kind = Literal["revenue", "binary", "continuous"]
Engine = Literal["bcf", "stratified"]
Aggregate = Literal["sum", "count", "conversion"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_window(text: str | None, option: str = "--window") -> float | None:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` as seconds; None stays None."""
    if text is None:
        return None
    found = _DURATION.match(text)
    if not found:
        raise typer.BadParameter(
            f"{text!r} is not a duration; give a number and a unit: 7d, 12h, 30m, 90s or 2w", param_hint=option
        )
    seconds = float(found.group(1)) * _UNITS[found.group(2).lower()]
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r} is no time at all; give a window longer than zero, such as 7d",
                                 param_hint=option)
    return seconds


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty items dropped); None stays None."""
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


WINDOW_HELP = "Attribution window with a unit: 7d, 12h, 30m (default: no limit)."
