"""The shard hash over a column of subject keys, straight from Arrow's UTF-8 buffers.

``shard(prefix + subject + suffix, total)`` for many subjects, the formula of
:func:`sortition.serving.sharding.shard`, with no Python string per subject. With numba,
:func:`sortition.serving.md5_lanes.keyed_shards` builds the padded blocks from Arrow's buffers
chunk by chunk and hashes them with the one batch MD5; without it, the blocks are built here with
numpy and hashed by :func:`sortition.serving.md5_batch.md5_first_word`. Messages over one MD5
block (55 bytes) go through :func:`~sortition.serving.sharding.shard` one by one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sortition.serving import md5_batch
from sortition.serving.sharding import shard

_MAX_ONE_BLOCK = 55  # bytes: message + 0x80 + 8-byte length must fit 64
_MIN_VECTOR = 64  # fewer messages: hashlib one by one is as fast


class SubjectBytes:
    """The UTF-8 bytes of a column of subject keys (no nulls): ``offsets`` int64 ``(n + 1,)``
    into ``data`` uint8."""

    def __init__(self, keys: pa.Array) -> None:
        if not pa.types.is_large_string(keys.type):
            keys = keys.cast(pa.large_string())
        _, offsets, data = keys.buffers()
        self.offsets = np.frombuffer(offsets, dtype=np.int64)[keys.offset: keys.offset + len(keys) + 1]
        self.data = np.zeros(0, np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)

    def text(self, row: int) -> str:
        return self.data[self.offsets[row]: self.offsets[row + 1]].tobytes().decode()

    def shards(self, rows: np.ndarray, prefix: str, total: int,
               suffixes: tuple[str, ...] = ("",)) -> np.ndarray:
        """``shard(prefix + key + suffix, total)`` for the keys at ``rows``: int64
        ``(len(rows), len(suffixes))`` (one column per suffix; the base block is built once)."""
        rows = np.asarray(rows, dtype=np.int64)
        head = prefix.encode()
        tails = [s.encode() for s in suffixes]
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        out = np.empty((len(rows), len(tails)), dtype=np.int64)
        fits = len(head) + lengths + max(map(len, tails)) <= _MAX_ONE_BLOCK
        if len(rows) < _MIN_VECTOR:
            fits[:] = False
        for i in np.flatnonzero(~fits).tolist():
            key = self.text(int(rows[i]))
            out[i] = [shard(prefix + key + s, total) for s in suffixes]
        short = np.flatnonzero(fits)
        lanes = md5_batch.compiled()
        if short.size and lanes is not None:  # numba: blocks built chunk by chunk, in the kernel
            out[short] = lanes.keyed_shards(self.data, starts[short], lengths[short], head, tails, total)
        elif short.size:
            block, end = _base_blocks(head, self.data, starts[short], lengths[short])
            for j, tail in enumerate(tails):
                words = _finish(block if j == len(tails) - 1 else block.copy(), end, tail)
                out[short, j] = md5_batch.md5_first_word(words).byteswap().astype(np.int64) % total
        return out


def _base_blocks(head: bytes, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(m, 64)`` uint8 blocks holding ``head + key`` (zeros after), and each message's end."""
    m = len(starts)
    block = np.zeros((m, 64), dtype=np.uint8)
    p = len(head)
    if p:
        block[:, :p] = np.frombuffer(head, dtype=np.uint8)
    if m and (lengths == lengths[0]).all():  # fixed-width keys: one gather
        width = int(lengths[0])
        if width:
            block[:, p:p + width] = data[starts[:, None] + np.arange(width)]
    elif m:
        total = int(lengths.sum())
        row = np.repeat(np.arange(m, dtype=np.int64), lengths)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        block.reshape(-1)[row * 64 + p + within] = data[np.repeat(starts, lengths) + within]
    return block, p + lengths


def _finish(block: np.ndarray, end: np.ndarray, tail: bytes) -> np.ndarray:
    """Append ``tail``, the 0x80 pad byte and the bit length; the words ``(16, m)`` uint32."""
    m = len(end)
    flat = block.reshape(-1)
    at = np.arange(m, dtype=np.int64) * 64 + end
    for t, byte in enumerate(tail + b"\x80"):
        flat[at + t] = byte
    block[:, 56:] = ((end + len(tail)) * 8).astype("<u8").view(np.uint8).reshape(m, 8)
    return np.ascontiguousarray(block.view("<u4").T)
