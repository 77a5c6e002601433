"""Numbers and tables for people: the one number format and the one HTML-escaped table.

Used by the HTML report and by the notebook reprs (``_repr_html_``) of Posterior, PolicyTree,
Allocation and RoundResult. Stdlib only, so any package may import it. Every value that can come
from a user's data (arm, segment, covariate names) is escaped here, never by the caller.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any


def number(value: Any, digits: int = 3) -> str:
    """A number as a person reads it: thousands separators, ``digits`` significant digits, no
    exponent between 1e-4 and 1e15 (``24,720``, ``0.0123``, ``-3.5``); integers exactly."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    x = float(value)
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    size = abs(x)
    if size < 1e-4 or size >= 1e15:
        return f"{x:.{max(0, digits - 1)}e}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(size))))
    text = f"{x:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def signed(value: Any, digits: int = 3) -> str:
    """:func:`number` with an explicit sign (``+1.2``, ``-0.5``)."""
    text = number(value, digits)
    if value is None or text in ("-", "0") or text.startswith("-"):
        return text
    return "+" + text


def percent(value: Any, digits: int = 0, sign: bool = False) -> str:
    """A share as a percent (``0.123`` -> ``12%``); ``-`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value) * 100:{'+' if sign else ''}.{digits}f}%"


def probability(value: Any) -> str:
    """A probability with two decimals (``0.95``, ``1.00``): read against thresholds such as 0.95."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.2f}"


def interval(mean: Any, lower: Any, upper: Any, digits: int = 3) -> str:
    """An estimate and its interval to one number of decimals, ``digits`` significant digits of the
    largest of the three: ``+1.23 [-0.14, 2.53]``, not ``+1.23 [-0.142, 2.53]`` (``+1.20 [0.30, 2.10]``;
    ``+24,720 [-1,234, 50,100]``). Where that is not possible (a missing or infinite value, or every
    value under 1e-4 or from 1e15, written with an exponent) each is :func:`number`'s."""
    values = [None if v is None else float(v) for v in (mean, lower, upper)]
    largest = math.inf if any(v is None or not math.isfinite(v) for v in values) else max(map(abs, values))
    if not 1e-4 <= largest < 1e15:
        return f"{signed(mean, digits)} [{number(lower, digits)}, {number(upper, digits)}]"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(largest))))
    m, lo, hi = values
    return f"{_fixed(m, decimals, sign=True)} [{_fixed(lo, decimals)}, {_fixed(hi, decimals)}]"


def _fixed(value: float, decimals: int, sign: bool = False) -> str:
    """``value`` with ``decimals`` decimals and thousands separators, signed when ``sign``; a value that
    rounds to zero has no sign (never ``-0.00`` or ``+0.00``)."""
    text = f"{value:{'+' if sign else ''},.{decimals}f}"
    return text.lstrip("+-") if not text.strip("+-0.,") else text


class Html(str):
    """Markup already escaped (a cell that holds it is not escaped again)."""


def escape(value: Any) -> str:
    """Text for an HTML page: escaped unless it is :class:`Html`."""
    return value if isinstance(value, Html) else html.escape(str(value), quote=True)


def cell(value: Any) -> str:
    """One ``<td>``: numbers right-aligned and formatted by :func:`number`, text escaped."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return f'<td class="num">{number(value)}</td>'
    return f"<td>{escape(value)}</td>"


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, css: str = "") -> Html:
    """An HTML table; every header and value escaped (see :func:`cell`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    klass = f' class="{escape(css)}"' if css else ""
    return Html(f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def titled(text: Any, title: Any) -> Html:
    """Text with the exact form on hover (``title``), both escaped."""
    return Html(f'<span title="{escape(title)}">{escape(text)}</span>')
