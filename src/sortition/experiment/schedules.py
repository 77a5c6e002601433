"""Round schedules: how many visitors each round of a sequential experiment sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Schedule:
    """Visitors per round, ``sizes[r]`` for round ``r`` (0-based)."""

    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) == 0:
            raise ValueError("a schedule needs at least one round")
        for r, size in enumerate(self.sizes):
            _positive_int(f"round {r} size", size)

    @property
    def n_rounds(self) -> int:
        return len(self.sizes)

    @property
    def total(self) -> int:
        return int(sum(self.sizes))

    def size(self, round_index: int) -> int:
        if not 0 <= round_index < len(self.sizes):
            raise IndexError(f"round {round_index} is outside this {len(self.sizes)}-round schedule")
        return self.sizes[round_index]

    def __iter__(self):
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)


def fixed(n_rounds: int, size: int) -> Schedule:
    """``n_rounds`` rounds of ``size`` visitors each."""
    _positive_int("n_rounds", n_rounds)
    _positive_int("size", size)
    return Schedule((size,) * n_rounds)


def geometric(n_rounds: int, first: int, ratio: float = 2.0) -> Schedule:
    """Rounds that grow by ``ratio``: ``round(first * ratio**r)`` (at least 1) visitors."""
    _positive_int("n_rounds", n_rounds)
    _positive_int("first", first)
    if not ratio > 0:
        raise ValueError(f"ratio must be positive, got {ratio!r}")
    return Schedule(tuple(max(1, int(round(first * ratio**r))) for r in range(n_rounds)))


def explicit(sizes: Sequence[int]) -> Schedule:
    """Rounds of exactly the given sizes."""
    return Schedule(tuple(sizes))


def as_schedule(value: Schedule | Sequence[int] | int, n_rounds: int | None = None) -> Schedule:
    """Coerce user input: a Schedule, a list of sizes, or one size (needs ``n_rounds``)."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if n_rounds is None:
            raise ValueError("a single round size needs n_rounds; or pass a list of sizes")
        return fixed(n_rounds, value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return explicit(value)
    raise TypeError(f"schedule must be a Schedule, a list of sizes or an int, got {type(value).__name__}")
