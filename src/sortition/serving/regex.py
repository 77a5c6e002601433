"""MATCHES / NOT_MATCHES patterns in linear time, with RE2 (``google-re2``).

Python's ``re`` backtracks: ``^(a+)+$`` against ``"a" * 26 + "!"`` takes seconds and holds the
GIL, and every extra character doubles it. RE2 (like the ``regex`` crate under Eppo's Rust core)
runs in time linear in the input, whatever the pattern.

Decisions (docs/serving.md, "Regular expressions"):

* A pattern RE2 cannot compile (backreferences ``\\1``, lookaround ``(?=``, ``\\Z``, a repetition
  above 1000, a syntax error) makes the condition false for everyone, with one warning when the
  configuration is loaded: the fallback an invalid pattern always had, and what Eppo's Rust
  core does for the same constructs. Python's ``re`` never sees a pattern RE2 refused, nor one
  with a quantifier or an alternation (below), so no pattern can freeze serving.
* Semantics where RE2 and ``re`` differ: ``$`` matches only at the very end (``re`` also before
  a final newline; the Rust core agrees with RE2); ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII.
* Text is matched as UTF-8 (a lone surrogate is passed through as its bytes and never raises).

The low-level ``re2._re2.RE2.Match`` is called directly: the ``re``-compatible wrapper builds
match objects and decodes spans, about 5x the cost of the match itself. Two kinds of pattern that
cannot backtrack more than the pattern's length at each position (so are linear in the input
for any engine) skip RE2's call overhead: a pattern without any quantifier or alternation (no
``* + ? { |``, no POSIX class) runs on Python's ``re`` with RE2's meanings (``re.ASCII``, ``$`` as
``\\Z``), about four times cheaper per call; and a pattern that is only a literal
(``@example\\.com``, optionally after ``^`` or ``.*`` and before ``$``) is answered by ``str``
methods (``in``, ``startswith``, ``endswith``, ``==``), also linear and ten times cheaper. RE2
still compiles every pattern first, so what it refuses stays refused.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

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
    literal = _literal_search(pattern)
    if literal is not None:
        return literal
    simple = _fixed_width_search(pattern)
    if simple is not None:
        return simple
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


_SPECIAL = frozenset("\\.^$|?*+()[]{}")
_ESCAPED_LITERALS = frozenset("\\.^$|?*+()[]{}-/@#&~'\"=!:,%<> ")


def _literal_search(pattern: str) -> Callable[[Any], bool] | None:
    """``text -> bool`` by str methods when ``pattern`` is ``[^ | .*] literal [$]``, else ``None``.

    ``.*`` before a literal changes nothing in an unanchored search (it may match the empty
    string); ``$`` is the very end (RE2's meaning). Escapes are kept only for punctuation, whose
    escaped form is the character itself; anything else (classes, ``\\d``, quantifiers,
    alternation, newlines, which ``.`` does not match) is left to RE2.
    """
    body = pattern
    start = body.startswith("^")
    if start:
        body = body[1:]
    elif body.startswith(".*"):
        body = body[2:]
    end = body.endswith("$") and not body.endswith("\\$")
    if end:
        body = body[:-1]
    chars = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPED_LITERALS:
                return None
            chars.append(body[i + 1])
            i += 2
            continue
        if ch in _SPECIAL or ch == "\n" or ch == "\r":
            return None
        chars.append(ch)
        i += 1
    literal = "".join(chars)
    if start and end:
        return literal.__eq__
    if start:
        return lambda text: text.startswith(literal)
    if end:
        return lambda text: text.endswith(literal)
    return lambda text: literal in text


def _fixed_width_search(pattern: str) -> Callable[[Any], bool] | None:
    """``text -> bool`` on Python's ``re`` for a pattern with no quantifier and no alternation
    (each attempt is bounded by the pattern, so a search is O(len(text) * len(pattern))), with
    RE2's semantics; ``None`` for any other pattern."""
    out = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return None
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if ch == "[" and pattern.startswith("[:", i):
                return None  # a POSIX class: RE2 only
            if ch == "]":
                in_class = False
            out.append(ch)
            i += 1
            continue
        if ch in "*+?{|":
            return None
        if ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a leading ] is a member, in both engines
                out.append("]")
                i += 1
            continue
        out.append("\\Z" if ch == "$" else ch)
        i += 1
    try:
        with warnings.catch_warnings():  # "possible nested set" and the like: RE2 already accepted it
            warnings.simplefilter("ignore")
            compiled = re.compile("".join(out), re.ASCII)
    except re.error:
        return None  # syntax only RE2 reads: leave it to RE2
    search = compiled.search
    return lambda text: search(text) is not None
