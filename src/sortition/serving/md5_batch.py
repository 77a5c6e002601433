"""The shard hash over many strings at once: MD5 vectorized across messages.

Same rule as :func:`sortition.serving.sharding.shard` (first 4 bytes of md5(UTF-8), big-endian,
mod ``total_shards``), computed for thousands of messages at once instead of one ``md5()`` call
per message. :func:`md5_first_word` runs the rounds: compiled lane-parallel with numba
(:mod:`sortition.serving.md5_lanes`, the optional extra ``sortition[fast]``) when it is
installed, else one numpy operation per MD5 step. A message of at most 55 UTF-8 bytes fits one padded
64-byte block; longer ones, and batches too small to pay for numpy's per-call overhead, go
through :func:`~sortition.serving.sharding.shard`'s md5 one by one.

Only the batch paths import this module (numpy is imported here, never by the single call;
numba only on the first hash of a batch).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from sortition.serving.sharding import MIN_VECTOR, shard


_MAX_ONE_BLOCK = 55  # bytes: message + 0x80 + 8-byte length must fit 64
_MASK = 0xFFFFFFFF
_INIT = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_ROT = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4
_K = tuple(int(abs(math.sin(i + 1)) * 2**32) & _MASK for i in range(64))
_WORD = tuple(i if i < 16 else (5 * i + 1) % 16 if i < 32 else (3 * i + 5) % 16 if i < 48 else (7 * i) % 16
              for i in range(64))


def shards(texts: Sequence[str], total_shards: int, *, min_vector: int = MIN_VECTOR) -> np.ndarray:
    """``[shard(t, total_shards) for t in texts]`` as an int64 array of shape ``(len(texts),)``.

    Args:
        texts: the strings to hash (UTF-8 encoded, as :func:`~sortition.serving.sharding.shard`).
        total_shards: modulus, >= 1.
        min_vector: batches of fewer one-block messages are hashed one by one (hashlib);
            ``0`` forces the vectorized path (tests).
    """
    n = len(texts)
    if "".join(texts).isascii():  # byte lengths are character lengths; numpy encodes ASCII itself
        encoded = texts
    else:
        encoded = [t.encode() for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    one_block = lengths <= _MAX_ONE_BLOCK
    short = int(one_block.sum())
    if short < max(min_vector, 1):
        return np.array([shard(t, total_shards) for t in texts], dtype=np.int64)
    rows = None
    if short < n:  # long messages: one md5 call each
        rows = np.flatnonzero(one_block)
        encoded = [encoded[i] for i in rows.tolist()]
        lengths = lengths[rows]
    first = md5_first_word(_padded_words(encoded, lengths))
    # The digest's first 4 bytes are word A little-endian; read big-endian, that is A byte-swapped.
    result = first.byteswap().astype(np.int64) % total_shards
    if rows is None:
        return result
    out = np.empty(n, dtype=np.int64)
    for i in np.flatnonzero(~one_block).tolist():
        out[i] = shard(texts[i], total_shards)
    out[rows] = result
    return out


def shards_product(prefixes: Sequence[str], suffixes: Sequence[str], total_shards: int, *,
                   min_vector: int = MIN_VECTOR) -> np.ndarray:
    """``shard(p + s, total_shards)`` for every prefix and suffix: int64 array of shape
    ``(len(prefixes), len(suffixes))``, without building the ``n * k`` strings (the bandit
    shuffle hashes ``f"{flag}-{subject}-" + action`` for every subject and action).

    Each prefix's block is built once and each suffix written into a copy of it; rows whose
    longest message exceeds one block go through :func:`shards`.
    """
    n, k = len(prefixes), len(suffixes)
    if n * k < max(min_vector, 1):
        texts = [p + x for p in prefixes for x in suffixes]
        return shards(texts, total_shards, min_vector=min_vector).reshape(n, k)
    ascii_prefixes = "".join(prefixes).isascii()
    encoded = prefixes if ascii_prefixes else [p.encode() for p in prefixes]
    tails = [x.encode() for x in suffixes]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    fits = lengths + max(map(len, tails)) <= _MAX_ONE_BLOCK
    out = np.empty((n, k), dtype=np.int64)
    if not fits.all():
        long_rows = np.flatnonzero(~fits).tolist()
        out[long_rows] = shards([prefixes[i] + x for i in long_rows for x in suffixes], total_shards,
                                min_vector=min_vector).reshape(len(long_rows), k)
        rows = np.flatnonzero(fits)
        encoded = [encoded[i] for i in rows.tolist()]
        lengths = lengths[rows]
    else:
        rows = None
    m = lengths.size
    if m:
        base = np.array(encoded, dtype="S64").view(np.uint8).reshape(m, 64)
        block = np.empty((k, m, 64), dtype=np.uint8)
        block[:] = base
        every = np.arange(m)
        for j, tail in enumerate(tails):
            for t, byte in enumerate(tail):  # one column write per suffix byte
                block[j, every, lengths + t] = byte
            size = lengths + len(tail)
            block[j, every, size] = 0x80
            block[j, :, 56:] = (size * 8).astype("<u8").view(np.uint8).reshape(m, 8)
        words = np.ascontiguousarray(block.reshape(k * m, 64).view("<u4").T)
        result = (md5_first_word(words).byteswap().astype(np.int64) % total_shards).reshape(k, m).T
        if rows is None:
            return result
        out[rows] = result
    return out


def _padded_words(messages: Sequence[str] | Sequence[bytes], lengths: np.ndarray) -> np.ndarray:
    """The padded MD5 blocks of messages (ASCII str or bytes) of at most 55 bytes each, as
    little-endian words: uint32 array of shape ``(16, n)`` (word-major, so each word is
    contiguous for the rounds)."""
    n = lengths.size
    # Fixed-width bytes: each row is the message then zeros, which is most of the padding.
    block = np.array(messages, dtype="S64").view(np.uint8).reshape(n, 64)
    block[np.arange(n), lengths] = 0x80
    block[:, 56:] = (lengths * 8).astype("<u8").view(np.uint8).reshape(n, 8)
    return np.ascontiguousarray(block.view("<u4").T)


def md5_first_word(words: np.ndarray) -> np.ndarray:
    """First state word (A) of MD5 after one block, per column of ``words``: uint32 ``(16, n)``
    -> ``(n,)``. The one MD5 of the batch paths: numba's compiled lanes, or numpy's rounds."""
    lanes = compiled()
    return lanes.first_word(words) if lanes is not None else _numpy_first_word(words)


@functools.cache
def compiled() -> ModuleType | None:
    """:mod:`sortition.serving.md5_lanes` (numba's lane-parallel kernels), imported on first use;
    ``None`` without numba."""
    try:
        from sortition.serving import md5_lanes
    except ImportError:
        return None
    return md5_lanes


def _numpy_first_word(words: np.ndarray) -> np.ndarray:
    """:func:`md5_first_word` in numpy: one array operation per MD5 step (the fallback)."""
    n = words.shape[1]
    # A word equal in every message (padding, length, a shared prefix) is a Python int: it
    # folds into the round constant, and leading ones run as scalar rounds once for all.
    column: list = []
    for j in range(16):
        w = words[j]
        column.append(int(w[0]) if n and (w == w[0]).all() else w)
    a, b, c, d = _INIT
    i = 0
    while i < 16 and column[i].__class__ is int:  # rounds over a shared prefix: scalars
        f = ((b & c) | (~b & d)) & _MASK
        f = (f + a + _K[i] + column[i]) & _MASK
        s = _ROT[i]
        a, b, c, d = d, (b + ((f << s | f >> (32 - s)) & _MASK)) & _MASK, b, c
        i += 1
    a, b, c, d = (np.full(n, x, dtype=np.uint32) for x in (a, b, c, d))
    f = np.empty(n, dtype=np.uint32)
    t = np.empty(n, dtype=np.uint32)
    for i in range(i, 64):
        if i < 16:
            np.bitwise_xor(c, d, out=f)  # (b & c) | (~b & d) == d ^ (b & (c ^ d))
            f &= b
            f ^= d
        elif i < 32:
            np.bitwise_xor(b, c, out=f)  # (d & b) | (~d & c) == c ^ (d & (b ^ c))
            f &= d
            f ^= c
        elif i < 48:
            np.bitwise_xor(b, c, out=f)
            f ^= d
        else:
            np.bitwise_not(d, out=f)  # c ^ (b | ~d)
            f |= b
            f ^= c
        f += a
        m = column[_WORD[i]]
        if m.__class__ is int:
            f += np.uint32((m + _K[i]) & _MASK)
        else:
            f += m
            f += np.uint32(_K[i])
        s = _ROT[i]
        np.left_shift(f, np.uint32(s), out=t)
        f >>= np.uint32(32 - s)
        f |= t
        f += b
        a, b, c, d, f = d, f, b, c, a  # the old A's buffer is free: reuse it for the next F
    a += np.uint32(_INIT[0])
    return a
