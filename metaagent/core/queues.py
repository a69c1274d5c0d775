"""The ready queues: one heap per capability, entries parked on a held resource, back-off.

Every method is synchronous and only changes the queues' own state, in the manner of
``asyncio.Queue``'s ``*_nowait`` methods; the scheduler decides what to push, when a task
starts and which resource an entry waits on. A record has at most one live entry: its
``queued`` field holds that entry's sequence number (0 when it has none), and an entry whose
number is not its record's any more (the task was cancelled, skipped or queued again) is
stale: it is dropped when it reaches the top of its heap.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Final, TypeAlias

from metaagent.core.tasks import TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from metaagent.core.scheduler.records import TaskRecord

__all__ = [
    "K_PRIORITY",
    "K_RANK",
    "K_RECORD",
    "K_RUN",
    "K_SEQ",
    "Delayed",
    "Head",
    "QueueKey",
    "ReadyQueues",
]

QueueKey: TypeAlias = "tuple[int, int, float, int, TaskRecord]"
"""A ready-queue entry, smallest first: (priority key with aging, run order, -critical-path
rank, sequence, record). Within a priority, earlier runs go first and, inside a run, the
critical path; the sequence number is unique, so records are never compared. A plain tuple
(read by the positions below), since one is built per queued task."""

K_PRIORITY: Final = 0  # intervals waited at queueing minus the priority: aging, lowest first
K_RUN: Final = 1  # the run's submission order
K_RANK: Final = 2  # minus the critical-path rank: the longest estimated work below goes first
K_SEQ: Final = 3  # the entry's sequence number: live while its record's ``queued`` equals it
K_RECORD: Final = 4  # the TaskRecord

Head: TypeAlias = "tuple[QueueKey, str]"
"""The head entry of one capability's queue and that capability, as ordered in a heap of
heads (its key first)."""

Delayed: TypeAlias = "tuple[float, int, TaskRecord]"
"""A task backing off before a retry: (time it may be queued again, sequence, record)."""

_READY = TaskState.READY
_COMPACT_AT: Final = 64  # stale entries a heap may hold before ``discard`` rebuilds it


class ReadyQueues:
    """Ready tasks per capability, in priority order; waiting ones set aside.

    ``heaps`` maps a capability to its heap of ``QueueKey`` entries (stale ones included);
    ``waiting`` counts, per capability, the tasks with a live entry, in a heap or parked: the
    scheduler lowers it when one of them starts or ends. ``seq`` is the last sequence number
    handed out; task records take theirs from the same counter.
    """

    __slots__ = ("_stale", "aging_interval_s", "delayed", "heaps", "parked", "seq", "waiting")

    def __init__(self, aging_interval_s: float) -> None:
        if aging_interval_s <= 0:
            raise ValueError(f"aging_interval_s must be positive, got {aging_interval_s}")
        self.aging_interval_s = aging_interval_s
        self.heaps: dict[str, list[QueueKey]] = {}
        self.waiting: dict[str, int] = {}
        self.parked: dict[str, list[QueueKey]] = {}  # entries by the held resource they wait on
        self.delayed: list[Delayed] = []
        self.seq = 0
        self._stale: dict[str, int] = {}  # entries made stale by ``discard``, per capability

    def push(self, rec: TaskRecord, now: float) -> None:
        """Queue ``rec`` (ready) under a new entry; an older entry of it becomes stale."""
        self.seq = seq = self.seq + 1
        rec.queued = seq
        task = rec.task
        cap = task.capability
        heap = self.heaps.get(cap)
        if heap is None:
            heap = self.heaps[cap] = []
        self.waiting[cap] = self.waiting.get(cap, 0) + 1
        # Aging: the key is static, yet a task that has waited k intervals longer than another
        # ranks as if its priority were k higher, so low priorities cannot starve.
        age = int(now // self.aging_interval_s)
        heappush(heap, (age - task.priority, rec.run.order, -rec.rank, seq, rec))

    @staticmethod
    def clean_head(heap: list[QueueKey]) -> bool:
        """Drop stale entries off the top of ``heap``; true if a live entry is left on top."""
        while heap:
            head = heap[0]
            rec = head[K_RECORD]
            if rec.state is _READY and rec.queued == head[K_SEQ]:
                return True
            heappop(heap)
        return False

    def head(self, capability: str) -> QueueKey | None:
        """The live entry that ``capability``'s queue would give next (stale ones dropped)."""
        heap = self.heaps.get(capability)
        return heap[0] if heap is not None and self.clean_head(heap) else None

    def pop(self, capability: str) -> QueueKey | None:
        """Take the live head entry of ``capability``'s queue, if any.

        The task still counts as waiting: it is parked, put back, or started (when the
        scheduler lowers ``waiting``).
        """
        heap = self.heaps.get(capability)
        return heappop(heap) if heap is not None and self.clean_head(heap) else None

    def heads(self, can_serve: Callable[[str], bool]) -> list[Head]:
        """A heap of the live head of every queue whose capability ``can_serve`` accepts."""
        clean_head = self.clean_head
        heads = [(h[0], cap) for cap, h in self.heaps.items() if clean_head(h) and can_serve(cap)]
        heapify(heads)
        return heads

    def discard(self, rec: TaskRecord) -> None:
        """``rec``, queued, ended without starting (cancelled, skipped): it waits no more.

        Its entry is stale from now on. A heap whose stale entries outnumber its live ones is
        rebuilt, so the records of ended tasks (and of their runs, once forgotten) are not
        kept alive by a queue that is never drained to them.
        """
        cap = rec.task.capability
        self.waiting[cap] -= 1
        stale = self._stale.get(cap, 0) + 1
        heap = self.heaps.get(cap)
        if heap is not None and stale > _COMPACT_AT and stale > self.waiting[cap]:
            heap[:] = [k for k in heap if _live(k)]
            heapify(heap)
            stale = 0
        self._stale[cap] = stale

    def put_back(self, keys: Iterable[QueueKey]) -> None:
        """Return popped entries to their queues under their old keys: they keep their place."""
        heaps = self.heaps
        for key in keys:
            heappush(heaps.setdefault(key[K_RECORD].task.capability, []), key)

    def prune(self) -> None:
        """Forget the queues left empty."""
        heaps = self.heaps
        for cap in [c for c, h in heaps.items() if not h]:
            del heaps[cap]

    def park(self, resource: str, key: QueueKey) -> None:
        """Set a popped entry aside until ``resource`` (held to its limit) is released, so a
        waiter costs nothing per round and cannot hide the work queued behind it."""
        self.parked.setdefault(resource, []).append(key)

    def unpark(self, resource: str) -> None:
        """``resource`` was released: the live entries parked on it go back to their queues,
        each in its old place."""
        parked = self.parked.pop(resource, None)
        if parked is not None:
            self.put_back(k for k in parked if _live(k))

    def delay(self, rec: TaskRecord, until: float) -> None:
        """Hold ``rec`` (ready, in no queue) back until ``until``; ``promote`` queues it then."""
        self.seq += 1
        rec.queued = 0
        heappush(self.delayed, (until, self.seq, rec))

    def promote(self, now: float) -> None:
        """Queue the delayed tasks that are due at ``now`` and still ready."""
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            _, _, rec = heappop(delayed)
            if rec.state is _READY:
                self.push(rec, now)

    def next_delayed(self) -> float | None:
        """When the first delayed task is due, if any is delayed."""
        return self.delayed[0][0] if self.delayed else None

    def depth(self) -> dict[str, int]:
        """Waiting tasks per capability, for those with any."""
        return {cap: n for cap, n in self.waiting.items() if n}


def _live(key: QueueKey) -> bool:
    rec = key[K_RECORD]
    return rec.state is _READY and rec.queued == key[K_SEQ]
