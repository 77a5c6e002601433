"""The one shard hash (Eppo's MD5 sharder).

``shard(text, n) = int.from_bytes(md5(text.encode("utf-8")).digest()[:4], "big") % n``.
Flag splits hash ``f"{salt}-{subject_key}"``; bandits hash ``f"{flag}-{subject}"`` and
``f"{flag}-{subject}-{action}"``, into :data:`TOTAL_SHARDS`. A compiled flag keeps one
:func:`salted` hasher per salt (md5 already fed ``f"{salt}-"``), so a request hashes only the
subject key: ``shard(subject_key, total, hasher)``. ``sortition.serving.md5_batch.shards`` is the
same rule over many strings at once (numpy), tested equal to this one.
"""

from __future__ import annotations

from struct import Struct
from typing import Any

try:  # CPython's own md5: about twice as fast as OpenSSL's for short strings (no EVP setup)
    from _md5 import md5
except ImportError:  # pragma: no cover - builds without it
    from hashlib import md5

# The one shard count: flag splits default to it (``totalShards``), and bandit selection hashes
# into it. Eppo's SDKs use 10,000 for both.
TOTAL_SHARDS = 10_000
BANDIT_ASSIGNMENT_SHARDS = TOTAL_SHARDS  # the same constant, under its former name (kept for callers)

# The one vector threshold of the shard hash: batches of at least this many one-block strings
# are hashed by sortition.serving.md5_batch
# (numpy, one operation per MD5 step for all of them); below it one md5 call each is as fast:
# numpy pays ~0.3 µs per operation and one MD5 block takes ~650 of them.
MIN_VECTOR = 4096

# First 4 digest bytes as a big-endian uint32 (faster than slicing + int.from_bytes).
first_uint32 = Struct(">I").unpack_from

_UNSALTED = md5()


def salted(prefix: str) -> Any:
    """An md5 hasher already fed ``prefix`` (copied, never updated in place, by :func:`shard`)."""
    return md5(prefix.encode())


def shard(text: str, total_shards: int, hasher: Any = _UNSALTED) -> int:
    """Shard of ``prefix + text`` in ``[0, total_shards)``, where ``hasher = salted(prefix)``
    (no hasher: of ``text`` alone): the first 4 bytes of md5 (UTF-8), big-endian, mod total."""
    h = hasher.copy()
    h.update(text.encode())
    return first_uint32(h.digest())[0] % total_shards


def shards(texts: list[str], total_shards: int) -> list[int]:
    """:func:`shard` over many strings (same results)."""
    return [shard(t, total_shards) for t in texts]
