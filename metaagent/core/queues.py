"""The ready queues: one lane per (capability, run), entries parked on a held resource, back-off.

Every method is synchronous and only changes the queues' own state, in the manner of
``asyncio.Queue``'s ``*_nowait`` methods; the scheduler decides what to push, when a task
starts and which resource an entry waits on. A record has at most one live entry: its
``queued`` field holds that entry's sequence number (0 when it has none), and an entry whose
number is not its record's any more (the task was cancelled, skipped, queued again or re-keyed)
is stale: it is dropped when it reaches the top of its heap.

Two orders make the queue. **Between runs**, weighted fair share: each run has a virtual time,
the expected slot-seconds it was given divided by its weight (``2 ** priority``); the lane of
the run with the least virtual time goes first, so a small run submitted after a huge one gets
its share at once. A run that had nothing queued starts again from the virtual time of the
last run served (no credit for idle time). **Within a run**, a static key: ``max(ready time,
latest start) - aging_interval_s * priority``, where the latest start is the run's start plus
its horizon (critical path plus total work over the slots: a bound on a list schedule's
makespan) minus the task's upward rank. Tasks not yet late go in latest-start order, which is
the critical path's (HEFT) order; a task that became ready after its latest start ranks by the
time it became ready: its wait, continuously (no bucket boundary), and each level of priority
is worth ``aging_interval_s`` seconds of it.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Final, TypeAlias

from metaagent.core.tasks import TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from metaagent.core.scheduler.records import RunRecord, TaskRecord

__all__ = [
    "K_RANK",
    "K_RECORD",
    "K_SEQ",
    "K_URGENCY",
    "Delayed",
    "Head",
    "Lane",
    "QueueKey",
    "ReadyQueues",
]

QueueKey: TypeAlias = "tuple[float, float, int, TaskRecord]"
"""A lane entry, smallest first: (urgency: latest start or ready time, less aging for priority;
minus the critical-path rank; sequence; record). The sequence number is unique, so records are
never compared. A plain tuple (read by the positions below), since one is built per queued
task."""

K_URGENCY: Final = 0  # max(ready time, latest start) - aging_interval_s * priority
K_RANK: Final = 1  # minus the critical-path rank: the longest estimated work below goes first
K_SEQ: Final = 2  # the entry's sequence number: live while its record's ``queued`` equals it
K_RECORD: Final = 3  # the TaskRecord


class Lane:
    """The queued tasks of one run for one capability: a heap of ``QueueKey`` entries."""

    __slots__ = ("cap", "heap", "run", "stale")

    def __init__(self, cap: str, run: RunRecord) -> None:
        self.cap = cap
        self.run = run
        self.heap: list[QueueKey] = []
        self.stale = 0  # entries made stale by ``discard``


Head: TypeAlias = "tuple[tuple[float, QueueKey], Lane]"
"""A lane's order among lanes, (its run's virtual time, its head entry), and the lane."""

Delayed: TypeAlias = "tuple[float, int, TaskRecord]"
"""A task backing off before a retry: (time it may be queued again, sequence, record)."""

_READY = TaskState.READY
_COMPACT_AT: Final = 64  # stale entries a heap may hold before ``discard`` rebuilds it


class ReadyQueues:
    """Ready tasks per capability and run, in order; waiting ones set aside.

    ``lanes`` maps a capability to its lanes by run (stale entries included); ``waiting``
    counts, per capability, the tasks with a live entry, in a lane or parked: the scheduler
    lowers it when one of them starts or ends. ``seq`` is the last sequence number handed out;
    task records take theirs from the same counter. ``vnow`` is the virtual time of the last
    run served.
    """

    __slots__ = (
        "aging_interval_s", "delayed", "lanes", "need_res", "parked", "parked_n", "seq", "vnow",
        "waiting",
    )  # fmt: skip

    def __init__(self, aging_interval_s: float) -> None:
        if aging_interval_s <= 0:
            raise ValueError(f"aging_interval_s must be positive, got {aging_interval_s}")
        self.aging_interval_s = aging_interval_s
        self.lanes: dict[str, dict[str, Lane]] = {}
        self.waiting: dict[str, int] = {}
        self.parked: dict[str, list[QueueKey]] = {}  # entries by the held resource they wait on
        self.parked_n: dict[str, int] = {}  # parked entries per capability
        self.need_res: dict[str, int] = {}  # waiting tasks that need a resource, per capability
        self.delayed: list[Delayed] = []
        self.seq = 0
        self.vnow = 0.0

    def key(self, rec: TaskRecord) -> QueueKey:
        """A new entry for ``rec`` (its sequence number becomes the live one)."""
        self.seq = seq = self.seq + 1
        rec.queued = seq
        run = rec.run
        rank = rec.rank
        ready = rec.ready_at if rec.ready_at is not None else run.started_at
        latest = run.started_at + run.horizon - rank
        urgency = (ready if ready > latest else latest) - self.aging_interval_s * rec.task.priority
        return (urgency, -rank, seq, rec)

    def lane(self, rec: TaskRecord) -> Lane:
        run = rec.run
        cap = rec.task.capability
        lane = run.lanes.get(cap)
        if lane is None:
            lane = run.lanes[cap] = Lane(cap, run)
            self.lanes.setdefault(cap, {})[run.id] = lane
        return lane

    def push(self, rec: TaskRecord, now: float) -> None:
        """Queue ``rec`` (ready) under a new entry; an older entry of it becomes stale."""
        self._count(rec)
        heappush(self.lane(rec).heap, self.key(rec))

    def _count(self, rec: TaskRecord) -> None:
        """The counts a queued task adds: waiting (and needing a resource) per capability,
        ready per run."""
        task = rec.task
        cap = task.capability
        self.waiting[cap] = self.waiting.get(cap, 0) + 1
        if task.resources:
            self.need_res[cap] = self.need_res.get(cap, 0) + 1
        run = rec.run
        if run.ready_n == 0 and run.vt < self.vnow:
            run.vt = self.vnow  # back from idle: no credit for the time it had nothing queued
        run.ready_n += 1

    def push_all(self, recs: Iterable[TaskRecord]) -> None:
        """``push`` each of ``recs`` in turn, in one go: the same entries, numbered alike.

        Alike tasks (a flat batch) share their urgency and rank: their entries share those
        float objects too, so that comparing two entries goes to the sequence number at once.
        """
        heap: list[QueueKey] = []
        last: RunRecord | None = None
        cap = ""
        urgency = neg = -1.0  # the last entry's floats, shared by the next when equal
        count, key = self._count, self.key
        for rec in recs:
            run = rec.run
            if rec.task.capability != cap or run is not last:
                cap = rec.task.capability
                last = run
                heap = self.lane(rec).heap
            count(rec)
            entry = key(rec)
            if entry[0] == urgency and entry[1] == neg:
                entry = (urgency, neg, entry[2], rec)
            else:
                urgency, neg = entry[0], entry[1]
            heappush(heap, entry)

    def rekey(self, run: RunRecord) -> None:
        """Rebuild the lanes of ``run`` after its ranks changed: O(queued) with no stale
        entries left behind (parked entries keep their keys until they come back)."""
        key = self.key
        for lane in run.lanes.values():
            heap = [key(k[K_RECORD]) for k in lane.heap if _live(k)]
            heapify(heap)
            lane.heap = heap
            lane.stale = 0

    def served(self, run: RunRecord, cost_s: float) -> None:
        """A task of ``run`` started, expected to take ``cost_s`` slot-seconds."""
        run.ready_n -= 1
        vt = run.vt
        if vt > self.vnow:
            self.vnow = vt
        run.vt = vt + cost_s / run.weight

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
        """The live entry that ``capability``'s lanes would give next (stale ones dropped)."""
        best: tuple[float, QueueKey] | None = None
        for lane in self.lanes.get(capability, {}).values():
            if self.clean_head(lane.heap):
                cand = (lane.run.vt, lane.heap[0])
                if best is None or cand < best:
                    best = cand
        return best[1] if best is not None else None

    def pop(self, capability: str) -> QueueKey | None:
        """Take the live entry that ``capability``'s lanes would give next, if any (the task
        still counts as waiting until it starts or is parked or put back)."""
        best: Lane | None = None
        for lane in self.lanes.get(capability, {}).values():
            if self.clean_head(lane.heap) and (
                best is None or (lane.run.vt, lane.heap[0]) < (best.run.vt, best.heap[0])
            ):
                best = lane
        return heappop(best.heap) if best is not None else None

    def heads(self, can_serve: Callable[[str], bool]) -> list[Head]:
        """A heap of the live head of every lane whose capability ``can_serve`` accepts."""
        clean_head = self.clean_head
        heads = [
            ((lane.run.vt, lane.heap[0]), lane)
            for cap, lanes in self.lanes.items()
            if can_serve(cap)
            for lane in lanes.values()
            if clean_head(lane.heap)
        ]
        heapify(heads)
        return heads

    def discard(self, rec: TaskRecord) -> None:
        """``rec``, queued, ended without starting (cancelled, skipped): it waits no more.

        Its entry is stale from now on. A lane whose stale entries outnumber its live ones is
        rebuilt, so the records of ended tasks (and of their runs, once forgotten) are not
        kept alive by a queue that is never drained to them.
        """
        cap = rec.task.capability
        self.waiting[cap] -= 1
        if rec.task.resources:
            self.need_res[cap] -= 1
        run = rec.run
        run.ready_n -= 1
        if run.ready_n == 0:  # nothing of the run is queued any more: drop its lanes
            for c, gone in run.lanes.items():
                gone.heap.clear()
                by_run = self.lanes.get(c)
                if by_run is not None:
                    by_run.pop(run.id, None)
                    if not by_run:
                        del self.lanes[c]
            run.lanes.clear()
            return
        mine = run.lanes.get(cap)
        if mine is None:
            return
        lane = mine
        lane.stale += 1
        if lane.stale > _COMPACT_AT and lane.stale > len(lane.heap) // 2:
            lane.heap[:] = [k for k in lane.heap if _live(k)]
            heapify(lane.heap)
            lane.stale = 0

    def put_back(self, keys: Iterable[QueueKey]) -> None:
        """Return popped entries to their lanes under their old keys: they keep their place."""
        for key in keys:
            heappush(self.lane(key[K_RECORD]).heap, key)

    def prune(self) -> None:
        """Forget the lanes left empty."""
        lanes = self.lanes
        for cap in list(lanes):
            by_run = lanes[cap]
            for rid in [r for r, lane in by_run.items() if not lane.heap]:
                lane = by_run.pop(rid)
                lane.run.lanes.pop(cap, None)
            if not by_run:
                del lanes[cap]

    def park(self, resource: str, key: QueueKey) -> None:
        """Set a popped entry aside until ``resource`` (held to its limit) is released, so a
        waiter costs nothing per round and cannot hide the work queued behind it."""
        self.parked.setdefault(resource, []).append(key)
        cap = key[K_RECORD].task.capability
        self.parked_n[cap] = self.parked_n.get(cap, 0) + 1

    def unpark(self, resource: str) -> None:
        """``resource`` was released: the live entries parked on it go back to their lanes,
        each in its old place."""
        parked = self.parked.pop(resource, None)
        if parked is not None:
            counts = self.parked_n
            for k in parked:
                counts[k[K_RECORD].task.capability] -= 1
            self.put_back(k for k in parked if _live(k))

    def parked_count(self) -> dict[str, int]:
        """Live parked entries per capability (they wait on a held resource, not a slot)."""
        out: dict[str, int] = {}
        for keys in self.parked.values():
            for k in keys:
                if _live(k):
                    cap = k[K_RECORD].task.capability
                    out[cap] = out.get(cap, 0) + 1
        return out

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

    def runnable(self, places: int) -> dict[str, int]:
        """Waiting tasks per capability that more agents could serve (what scaling counts):
        of those that need an exclusive resource, at most ``places`` (the resource places
        free now, at least one), since the others would only wait for a holder to end."""
        need = self.need_res
        if not any(need.values()):
            return self.waiting
        return {
            cap: n - need.get(cap, 0) + min(need.get(cap, 0), places)
            for cap, n in self.waiting.items()
        }


def _live(key: QueueKey) -> bool:
    rec = key[K_RECORD]
    return rec.state is _READY and rec.queued == key[K_SEQ]
