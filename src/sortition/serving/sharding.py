"""The one shard hash (Eppo's MD5 sharder).

``shard(text, n) = int.from_bytes(md5(text.encode("utf-8")).digest()[:4], "big") % n``.
Flag splits hash ``f"{salt}-{subject_key}"``; bandits hash ``f"{flag}-{subject}"`` and
``f"{flag}-{subject}-{action}"`` into :data:`BANDIT_ASSIGNMENT_SHARDS`.
"""

from __future__ import annotations

from hashlib import md5

BANDIT_ASSIGNMENT_SHARDS = 10_000

_from_bytes = int.from_bytes


def shard(text: str, total_shards: int) -> int:
    """Shard of ``text`` in ``[0, total_shards)``: first 4 bytes of md5(UTF-8), big-endian, mod total."""
    return _from_bytes(md5(text.encode()).digest()[:4], "big") % total_shards


def shards(texts: list[str], total_shards: int) -> list[int]:
    """:func:`shard` over many strings (same results, less call overhead)."""
    return [_from_bytes(md5(t.encode()).digest()[:4], "big") % total_shards for t in texts]
