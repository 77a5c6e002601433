"""MD5's first state word for many one-block messages at once, compiled with numba.

Lane-parallel: the messages are lanes. Words are stored message-minor, shape ``(16, n)``, and a
chunk of :data:`CHUNK` lanes is hashed at a time, with the 64 MD5 steps as the outer loop and the
lanes as the inner loop, so every step is one operation over contiguous lanes that LLVM
vectorizes (about 0.02 µs per hash on one core, against numpy's 0.18 µs).

:func:`keyed_shards` builds the padded blocks of ``prefix + key + suffix`` from Arrow's bytes in
the kernel (columnar scoring). Imported only through :func:`sortition.serving.md5_batch.compiled`,
on the first batch hash, and only when numba is installed (the optional extra
``sortition[fast]``); numpy's rounds are the fallback.
"""

from __future__ import annotations

import math

import numba
import numpy as np

CHUNK = 1024  # lanes per pass: the four state rows and the 16 word rows stay in L1/L2

_M32 = np.uint64(0xFFFFFFFF)
_ROT = np.array((7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4,
                dtype=np.uint64)
_K = np.array([int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)], dtype=np.uint64)
_WORD = np.array([i if i < 16 else (5 * i + 1) % 16 if i < 32 else (3 * i + 5) % 16 if i < 48
                  else (7 * i) % 16 for i in range(64)], dtype=np.int64)
_INIT = np.array((0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476), dtype=np.uint64)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _rounds(words: np.ndarray, start: int, m: int, state: np.ndarray, rot: np.ndarray, k: np.ndarray,
            word: np.ndarray, init: np.ndarray) -> np.ndarray:
    """The 64 MD5 steps over lanes ``start .. start + m`` of ``words`` (uint32 ``(16, n)``), in
    ``state`` (uint32 ``(4, CHUNK)`` scratch); returns state word A per lane (``(m,)`` view)."""
    a, b, c, d = state[0], state[1], state[2], state[3]
    for lane in range(m):
        a[lane] = init[0]
        b[lane] = init[1]
        c[lane] = init[2]
        d[lane] = init[3]
    for step in range(64):
        w = words[word[step], start:start + m]
        s = rot[step]
        ks = k[step]
        rnd = step >> 4
        # The new B is written over A's row; the rows then rotate roles (a, b, c, d = d, a, b, c).
        if rnd == 0:
            for lane in range(m):
                x, y, z = np.uint64(b[lane]), np.uint64(c[lane]), np.uint64(d[lane])
                f = (z ^ (x & (y ^ z))) + np.uint64(a[lane]) + ks + np.uint64(w[lane])
                f &= _M32
                a[lane] = x + (((f << s) | (f >> (np.uint64(32) - s))) & _M32)
        elif rnd == 1:
            for lane in range(m):
                x, y, z = np.uint64(b[lane]), np.uint64(c[lane]), np.uint64(d[lane])
                f = (y ^ (z & (x ^ y))) + np.uint64(a[lane]) + ks + np.uint64(w[lane])
                f &= _M32
                a[lane] = x + (((f << s) | (f >> (np.uint64(32) - s))) & _M32)
        elif rnd == 2:
            for lane in range(m):
                x, y, z = np.uint64(b[lane]), np.uint64(c[lane]), np.uint64(d[lane])
                f = (x ^ y ^ z) + np.uint64(a[lane]) + ks + np.uint64(w[lane])
                f &= _M32
                a[lane] = x + (((f << s) | (f >> (np.uint64(32) - s))) & _M32)
        else:
            for lane in range(m):
                x, y, z = np.uint64(b[lane]), np.uint64(c[lane]), np.uint64(d[lane])
                f = (y ^ (x | (~z & _M32))) + np.uint64(a[lane]) + ks + np.uint64(w[lane])
                f &= _M32
                a[lane] = x + (((f << s) | (f >> (np.uint64(32) - s))) & _M32)
        a, b, c, d = d, a, b, c
    for lane in range(m):  # 64 rotations: ``a`` is state[0] again
        a[lane] += np.uint32(init[0])
    return a[:m]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _first_word(words: np.ndarray, out: np.ndarray, rot: np.ndarray, k: np.ndarray, word: np.ndarray,
                init: np.ndarray) -> None:
    """``out[j]`` = MD5 state word A after the block ``words[:, j]`` (uint32 (16, n) -> (n,))."""
    n = words.shape[1]
    state = np.empty((4, CHUNK), dtype=np.uint32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        out[start:start + m] = _rounds(words, start, m, state, rot, k, word, init)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _keyed_shards(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, head: np.ndarray,
                  tails: np.ndarray, tail_lengths: np.ndarray, total: int, out: np.ndarray, rot: np.ndarray,
                  k: np.ndarray, word: np.ndarray, init: np.ndarray) -> None:
    """``out[i, j]`` = shard of ``head + data[starts[i]:][:lengths[i]] + tails[j][:tail_lengths[j]]``
    (every message at most 55 bytes), the padded blocks built per chunk straight from the bytes."""
    n = starts.shape[0]
    base = np.zeros((16, CHUNK), dtype=np.uint32)
    words = np.empty((16, CHUNK), dtype=np.uint32)
    state = np.empty((4, CHUNK), dtype=np.uint32)
    p = head.shape[0]
    shared = np.zeros(16, dtype=np.uint32)  # the head's words, packed once for every lane
    for t in range(p):
        shared[t >> 2] |= np.uint32(head[t]) << np.uint32(8 * (t & 3))
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        for q in range(16):
            base[q, :m] = shared[q]
        for lane in range(m):
            at = starts[start + lane]
            for t in range(lengths[start + lane]):
                q = p + t
                base[q >> 2, lane] |= np.uint32(data[at + t]) << np.uint32(8 * (q & 3))
        for j in range(tails.shape[0]):
            words[:, :m] = base[:, :m]
            for lane in range(m):
                end = p + lengths[start + lane]
                for t in range(tail_lengths[j] + 1):
                    byte = tails[j, t] if t < tail_lengths[j] else 0x80
                    q = end + t
                    words[q >> 2, lane] |= np.uint32(byte) << np.uint32(8 * (q & 3))
                words[14, lane] = np.uint32((end + tail_lengths[j]) * 8)
            a = _rounds(words, 0, m, state, rot, k, word, init)
            for lane in range(m):  # the digest's first 4 bytes big-endian: word A byte-swapped
                x = np.uint64(a[lane])
                swapped = ((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | (x >> 24)
                out[start + lane, j] = np.int64(swapped) % total


def first_word(words: np.ndarray) -> np.ndarray:
    """MD5 state word A after one block per column of ``words``: uint32 ``(16, n)`` -> ``(n,)``."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    out = np.empty(words.shape[1], dtype=np.uint32)
    _first_word(words, out, _ROT, _K, _WORD, _INIT)
    return out


def keyed_shards(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, head: bytes,
                 tails: list[bytes], total: int) -> np.ndarray:
    """``shard(head + key + tail, total)`` for the keys ``data[starts[i]:starts[i] + lengths[i]]``
    (uint8 bytes, int64 offsets) and every tail: int64 ``(len(starts), len(tails))``. Every
    message must fit one block (<= 55 bytes); the caller sends longer ones elsewhere."""
    width = max(1, max(map(len, tails)))
    tail_bytes = np.zeros((len(tails), width + 1), dtype=np.uint8)
    for j, tail in enumerate(tails):
        tail_bytes[j, :len(tail)] = np.frombuffer(tail, dtype=np.uint8)
    out = np.empty((len(starts), len(tails)), dtype=np.int64)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    _keyed_shards(data, starts, lengths, np.frombuffer(head, dtype=np.uint8), tail_bytes,
                  np.array([len(t) for t in tails], dtype=np.int64), total, out, _ROT, _K, _WORD, _INIT)
    return out
