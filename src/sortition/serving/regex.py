"""MATCHES / NOT_MATCHES patterns in linear time, with RE2 (``google-re2``).

Python's ``re`` backtracks: ``^(a+)+$`` against ``"a" * 26 + "!"`` takes seconds and holds the
GIL, and every extra character doubles it. RE2 (like the ``regex`` crate under Eppo's Rust core)
runs in time linear in the input, whatever the pattern.

Decisions (docs/serving.md, "Regular expressions"):

* A pattern RE2 cannot compile (backreferences ``\\1``, lookaround ``(?=``, ``\\Z``, a repetition
  above 1000, a syntax error) makes the condition false for everyone, with one warning when the
  configuration is loaded: the fallback an invalid pattern always had, and what Eppo's Rust
  core does for the same constructs. Python's ``re`` is never used, so no pattern can freeze
  serving.
* Semantics where RE2 and ``re`` differ: ``$`` matches only at the very end (``re`` also before
  a final newline; the Rust core agrees with RE2); ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII.
* Text is matched as UTF-8 (a lone surrogate is passed through as its bytes and never raises).

The low-level ``re2._re2.RE2.Match`` is called directly: the ``re``-compatible wrapper builds
match objects and decodes spans, about 5x the cost of the match itself.
"""

from __future__ import annotations

from collections.abc import Callable

from re2 import _re2

MAX_PATTERN_BYTES = 64 * 1024  # longer patterns are refused (false) rather than compiled

_OPTIONS = _re2.RE2.Options()
_OPTIONS.log_errors = False  # RE2 would print every rejected pattern to stderr
_OPTIONS.never_capture = True  # only "is there a match" is asked: no submatch bookkeeping
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


class PatternError(ValueError):
    """A pattern RE2 cannot compile (the condition is then false for everyone)."""


def compile_search(pattern: str) -> Callable[[str], bool]:
    """A function ``text -> bool``: does ``pattern`` match anywhere in ``text`` (like ``re.search``).

    Time is linear in ``len(text)`` for every pattern.

    Raises:
        PatternError: RE2 cannot compile ``pattern`` (the message says why).
    """
    encoded = pattern.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATTERN_BYTES:
        raise PatternError(f"pattern is {len(encoded)} bytes long; the limit is {MAX_PATTERN_BYTES}")
    compiled = _re2.RE2(encoded, _OPTIONS)
    if not compiled.ok():
        raise PatternError(compiled.error().decode("utf-8", "replace"))
    match = compiled.Match
    unanchored = _UNANCHORED
    no_match = (-1, -1)

    def search(text: str) -> bool:
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: match its bytes, never raise
            data = text.encode("utf-8", "surrogatepass")
        return match(unanchored, data, 0, len(data))[0] != no_match

    return search
