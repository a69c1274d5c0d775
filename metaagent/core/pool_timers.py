"""The pool's timers: restarts, breaker probes and rate-limit ends, in the order they fall due.

Pure: the caller says what time it is; nothing here reads a clock.
"""

from __future__ import annotations

import enum
import heapq
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator


class TimerKind(enum.Enum):
    """What a pool timer does when it fires (on the spec or instance it names)."""

    RESPAWN = "respawn"  # restart a lost instance of a spec below its min_instances
    PROBE = "probe"  # let a quarantined instance take one attempt
    UNTHROTTLE = "unthrottle"  # a spec's rate-limit minute is over


class Timer(NamedTuple):
    """One timer: when it fires, what it does and on what."""

    at: float
    seq: int  # ties fire in the order they were set
    kind: TimerKind
    name: str  # a spec's name or an instance's id, by kind


class Timers:
    """A heap of timers; ``due(now)`` hands out those that have fired, earliest first."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = 0

    def __bool__(self) -> bool:
        return bool(self._heap)

    def set(self, at: float, kind: TimerKind, name: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, Timer(at, self._seq, kind, name))

    def next_at(self) -> float | None:
        """When the earliest timer fires, or ``None`` when none is set."""
        return self._heap[0].at if self._heap else None

    def due(self, now: float) -> Iterator[Timer]:
        """Pop the timers due by ``now``; one set while this runs fires too if it is due."""
        heap = self._heap
        while heap and heap[0].at <= now:
            yield heapq.heappop(heap)
