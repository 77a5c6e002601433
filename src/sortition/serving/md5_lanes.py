"""MD5's first state word for many one-block messages at once, compiled with numba.

Lane-parallel: the messages are lanes. Words are stored message-minor, shape ``(16, n)``, and a
chunk of :data:`CHUNK` lanes is hashed at a time, with the 64 MD5 steps as the outer loop and the
lanes as the inner loop, so every step is one operation over contiguous lanes that LLVM
vectorizes (about 0.02 µs per hash on one core, against numpy's 0.18 µs).

Imported only by :func:`sortition.serving.md5_batch.md5_first_word`, and only when numba is
installed (the optional extra ``sortition[fast]``); numpy's rounds are the fallback.
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
def _first_word(words: np.ndarray, out: np.ndarray, rot: np.ndarray, k: np.ndarray, word: np.ndarray,
                init: np.ndarray) -> None:
    """``out[j]`` = MD5 state word A after the block ``words[:, j]`` (uint32 (16, n) -> (n,))."""
    n = words.shape[1]
    state = np.empty((4, CHUNK), dtype=np.uint32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
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
        for lane in range(m):
            out[start + lane] = a[lane] + init[0]


def first_word(words: np.ndarray) -> np.ndarray:
    """MD5 state word A after one block per column of ``words``: uint32 ``(16, n)`` -> ``(n,)``."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    out = np.empty(words.shape[1], dtype=np.uint32)
    _first_word(words, out, _ROT, _K, _WORD, _INIT)
    return out
