"""Time limits of running attempts, served by one loop timer rather than one per attempt.

Every attempt has a limit (an hour by default), so a per-attempt ``asyncio.timeout`` would
make and cancel a timer handle for each of them, a cost on the hot path for limits that almost
never expire. Here the limits wait in one heap; one loop timer, set for the earliest, cancels
the attempts whose limit passed. A limit removed early is dropped lazily and the heap is
compacted when the dropped ones outnumber the live ones, so it holds about as many entries as
attempts are running.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


class Limit:
    """One attempt's time limit: ``expired`` once its deadline passed and its task was
    cancelled for it."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        self.expired = False


class Deadlines:
    """The limits of one event loop's attempts. ``arm`` when an attempt starts, ``disarm`` when
    it ends before its limit; an attempt past its limit is cancelled (``Limit.expired``)."""

    __slots__ = ("_dropped", "_heap", "_loop", "_seq", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Limit]] = []
        self._seq = 0
        self._dropped = 0  # entries of limits disarmed before their deadline
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def __len__(self) -> int:
        return len(self._heap) - self._dropped

    def arm(
        self, loop: asyncio.AbstractEventLoop, limit_s: float, task: asyncio.Task[object]
    ) -> Limit:
        """Cancel ``task`` once ``limit_s`` seconds (of the loop's clock) have passed."""
        when = loop.time() + limit_s
        limit = Limit(task)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, limit))
        if self._timer_at is None or when < self._timer_at:
            self._set_timer(loop, when)
        return limit

    def disarm(self, limit: Limit) -> None:
        """The attempt ended within its limit."""
        if limit.task is None:
            return
        limit.task = None
        self._dropped += 1
        if self._dropped > 64 and self._dropped * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[2].task is not None]
            heapq.heapify(self._heap)
            self._dropped = 0

    def close(self) -> None:
        """Forget every limit and the timer (the loop is closing)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._heap.clear()
        self._dropped = 0

    def _set_timer(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop = loop
        self._timer_at = when
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        loop = self._loop
        assert loop is not None
        heap = self._heap
        now = loop.time()
        while heap and heap[0][0] <= now:
            limit = heapq.heappop(heap)[2]
            task = limit.task
            if task is None:
                self._dropped -= 1
                continue
            limit.task = None
            limit.expired = True
            task.cancel()
        if heap:
            self._set_timer(loop, heap[0][0])
