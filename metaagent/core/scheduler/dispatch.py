"""Dispatch: ready queues per capability and the choice of what runs next, on which agent."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from metaagent.core.decisions import RouteTask
from metaagent.core.instances import AgentState
from metaagent.core.scheduler.base import SchedulerState
from metaagent.core.tasks import AgentTask, Attempt, TaskState

if TYPE_CHECKING:
    from metaagent.core.routing import Choice
    from metaagent.core.scheduler.base import QueueKey
    from metaagent.core.scheduler.records import TaskRecord

_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING
_AREADY = AgentState.READY


class Dispatching(SchedulerState):
    """Queues ready work and routes it: queue heads in a heap, resources all or nothing."""

    def _enqueue(self, rec: TaskRecord, now: float) -> None:
        self._seq += 1
        rec.queued = self._seq
        cap = rec.task.capability
        heap = self._ready.get(cap)
        if heap is None:
            heap = self._ready[cap] = []
        self._depth[cap] = self._depth.get(cap, 0) + 1
        # Aging: the key is static, yet a task that has waited k intervals longer than another
        # ranks as if its priority were k higher, so low priorities cannot starve.
        age = int(now // self.config.aging_interval_s)
        heapq.heappush(heap, (age - rec.task.priority, rec.run.order, -rec.rank, self._seq, rec))

    def dispatch(self, now: float) -> list[RouteTask]:
        """Route as many ready tasks as free slots and the global limit allow.

        The best head over all capability queues goes first (priority with aging, then
        critical-path rank, then age); a head that cannot be placed now (its resources are
        held, or only agents it must avoid are free) is passed over for this round. The heads
        of the queues are kept in a heap of their own, so a decision costs O(log n) however
        many capabilities have work waiting.
        """
        out: list[RouteTask] = []
        if self._delayed and self._delayed[0][0] <= now:
            self._promote_delayed(now)
        limit = self.config.max_concurrency
        if self.running >= limit or not self._ready:
            return out
        router = self.router
        cap_limits = self.config.capability_limits
        running_cap = self._running_cap
        margin = self.config.affinity_margin
        ready = self._ready
        heappop, heappush = heapq.heappop, heapq.heappush
        deferred: list[QueueKey] = []
        heads: list[tuple[QueueKey, str]] = []
        for cap, heap in ready.items():
            if clean_head(heap) and router.has_free(cap):
                heads.append((heap[0], cap))
        heapq.heapify(heads)
        # Within one round slots only get taken, never freed: a capability that cannot take
        # work now is dropped for the round.
        while heads and self.running < limit:
            head, cap = heappop(heads)
            heap = ready[cap]
            # Take from this queue while its head stays the best of all (one busy
            # capability never goes through the heads' heap at all).
            while router.has_free(cap):
                if cap_limits and running_cap.get(cap, 0) >= cap_limits.get(cap, limit):
                    break
                heappop(heap)
                rec = head[4]
                task = rec.task
                if task.resources and not self._resources_free(task):
                    # Set aside until the resource is released, so waiters cost nothing per
                    # round and cannot hide the work queued behind them.
                    self._park(head)
                else:
                    group = task.group
                    prefer = self._affinity.get((rec.run.id, group)) if group is not None else None
                    choice = router.route(task, rec.avoid, prefer, margin)
                    if choice is None:
                        deferred.append(head)  # only agents it must avoid are free: next round
                    else:
                        out.append(self._start(rec, choice, now))
                if self.running >= limit or not clean_head(heap):
                    break
                head = heap[0]
                if heads and heads[0][0] < head:
                    heappush(heads, (head, cap))
                    break
        for key in deferred:
            heappush(ready[key[4].task.capability], key)
        for cap in [c for c, h in ready.items() if not h]:
            del ready[cap]
        return out

    def _park(self, key: QueueKey) -> None:
        held = self._held
        limits = self.config.resource_limits
        full = next(r for r in key[4].task.resources if held.get(r, 0) >= limits.get(r, 1))
        self._parked.setdefault(full, []).append(key)

    def _resources_free(self, task: AgentTask) -> bool:
        """All-or-nothing: every named resource has a free place, or none is taken."""
        held = self._held
        limits = self.config.resource_limits
        return all(held.get(r, 0) < limits.get(r, 1) for r in task.resources)

    def _start(self, rec: TaskRecord, choice: Choice, now: float) -> RouteTask:
        inst = choice.instance
        task = rec.task
        rec.state = _RUNNING
        rec.attempt += 1
        rec.instance = inst
        spec = inst.spec.name
        # Attempt times are relative to the run's start: reports use them as they are.
        rec.attempts.append(Attempt(rec.attempt, spec, inst.id, now - rec.run.started_at))
        cap = task.capability
        self._depth[cap] -= 1
        rec.queued = 0
        inst.busy_s -= now  # slot-seconds: the attempt's end adds ``now`` back
        if inst.state is _AREADY and inst.running < inst.slots:
            self.router.adjust_free(inst, -1)
        inst.running += 1
        self.running += 1
        self._running_cap[cap] = self._running_cap.get(cap, 0) + 1
        if self.running > self.peak_running:
            self.peak_running = self.running
        if inst.spec.rate_per_min is not None:
            self.pool.on_start(inst, now)
        for r in task.resources:
            self._held[r] = self._held.get(r, 0) + 1
        if task.group is not None:
            self._affinity[(rec.run.id, task.group)] = inst
        if choice.affinity:
            why = (
                f"affinity: {inst.id} handled earlier tasks of group {task.group!r} and scores "
                f"within {self.config.affinity_margin} of the best"
            )
        else:
            why = f"best of {len(choice.ranked)} scored for {task.capability!r}"
        if rec.avoid:
            why += f"; avoiding {', '.join(sorted(rec.avoid))} after a failed attempt"
        return RouteTask(
            now,
            rec.run.id,
            task.id,
            why,
            attempt=rec.attempt,
            spec=spec,
            instance=inst.id,
            score=choice.score,
            parts=choice.parts,
            ranked=choice.ranked,
        )

    def _promote_delayed(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, rec = heapq.heappop(delayed)
            if rec.state is _READY:
                self._enqueue(rec, now)


def clean_head(heap: list[QueueKey]) -> bool:
    """Drop stale entries (cancelled, skipped or requeued tasks) off the top of a ready queue;
    true if a live entry is left on top."""
    while heap:
        head = heap[0]
        rec = head[4]
        if rec.state is _READY and rec.queued == head[3]:
            return True
        heapq.heappop(heap)
    return False
