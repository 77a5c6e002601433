"""The one reader of a user's own files (configurations, models, test vectors, action lists).

Every failure is a ``ValueError`` that names the file and what it was for: a missing or unreadable
file, bytes that are not text, text that is not JSON (with where). The CLI prints it; nothing here
exits.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any, BinaryIO


def read_bytes(path: str | Path, what: str) -> bytes:
    """The bytes of a user's file; ValueError ``cannot read WHAT 'PATH': why``."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {what} '{path}': {err.strerror or err}") from None


def read_text(path: str | Path, what: str) -> str:
    """A user's UTF-8 text file; ValueError naming the file and the first byte that is not UTF-8."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(_not_text(path, what, err)) from None


def read_json(path: str | Path, what: str) -> Any:
    """A user's JSON file (UTF-8, or UTF-16/32 with its byte order, as ``json.loads`` reads bytes);
    ValueError naming the file: unreadable, not text, or not JSON and where."""
    data = read_bytes(path, what)
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} '{path}' is not valid JSON: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(_not_text(path, what, err)) from None


def first_non_utf8(stream: BinaryIO, chunk: int = 1 << 20) -> tuple[int, int, int] | None:
    """Where a byte stream stops being UTF-8: ``(line, offset, byte)``, 1-based line; None if it is.

    Streams in chunks (a large CSV's error path must not load the file) with an incremental decoder,
    so a character split across two chunks is not mistaken for a bad byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 0
    while True:
        block = stream.read(chunk)
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as err:
            pending = len(err.object) - len(block)  # bytes the decoder held over from the last block
            at = err.start - pending
            lines += block.count(b"\n", 0, max(at, 0))
            return lines + 1, offset + at, err.object[err.start]
        if not block:
            return None
        offset += len(block)
        lines += block.count(b"\n")


def not_text_message(path: str | Path, what: str, line: int, offset: int, byte: int,
                     fix: str = "save it as UTF-8") -> str:
    """The one wording of "this file is not UTF-8 text", with where and what to do."""
    return (f"{what} '{path}' is not UTF-8 text: line {line} holds byte 0x{byte:02x} (offset {offset}); "
            f"{fix} (is it the file you meant?)")


def decode_error_place(err: UnicodeDecodeError) -> tuple[int, int, int]:
    """``(line, offset, byte)`` of a decode error over a whole file's bytes (1-based line)."""
    return err.object.count(b"\n", 0, err.start) + 1, err.start, err.object[err.start]


def _not_text(path: str | Path, what: str, err: UnicodeDecodeError) -> str:
    return not_text_message(path, what, *decode_error_place(err))
