"""Dispatch: the choice of what runs next, on which agent, from the ready queues."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from metaagent.core.decisions import RouteTask
from metaagent.core.instances import AgentState
from metaagent.core.queues import K_RECORD
from metaagent.core.scheduler.base import SchedulerBase
from metaagent.core.tasks import Attempt, TaskState

if TYPE_CHECKING:
    from metaagent.core.queues import Head, QueueKey
    from metaagent.core.routing import Choice
    from metaagent.core.scheduler.records import TaskRecord
    from metaagent.core.tasks import AgentTask

_RUNNING = TaskState.RUNNING
_AREADY = AgentState.READY


class Dispatching(SchedulerBase):
    """Routes ready work: queue heads in a heap, resources all or nothing."""

    def dispatch(self, now: float) -> list[RouteTask]:
        """Route as many ready tasks as free slots and the global limit allow.

        The best head over all capability queues goes first (priority with aging, then
        critical-path rank, then age); a head that cannot be placed now (its resources are
        held, or only agents it must avoid are free) is passed over for this round. The heads
        of the queues are kept in a heap of their own, so a decision costs O(log n) however
        many capabilities have work waiting.
        """
        out: list[RouteTask] = []
        queues = self.queues
        if queues.delayed:
            queues.promote(now)
        limit = self.config.max_concurrency
        if self.running >= limit or not queues.heaps:
            return out
        deferred: list[QueueKey] = []  # only agents it must avoid are free: next round
        heads = queues.heads(self.router.has_free)
        heappop = heapq.heappop
        # Within one round slots only get taken, never freed: a capability that cannot take
        # work now is dropped for the round.
        while heads and self.running < limit:
            head, cap = heappop(heads)
            self._take(cap, head, heads, deferred, out, now)
        if deferred:
            queues.put_back(deferred)
        queues.prune()
        return out

    def _take(
        self,
        cap: str,
        head: QueueKey,
        heads: list[Head],
        deferred: list[QueueKey],
        out: list[RouteTask],
        now: float,
    ) -> None:
        """Take from ``cap``'s queue (``head`` on top) while its head stays the best of all:
        one busy capability never goes through the heads' heap at all. A capability whose head
        is no longer the best goes back into ``heads``; one that is out of slots does not."""
        queues = self.queues
        heap = queues.heaps[cap]
        clean_head = queues.clean_head
        router = self.router
        config = self.config
        limit = config.max_concurrency
        cap_limits = config.capability_limits
        running_cap = self._running_cap
        margin = config.affinity_margin
        heappop = heapq.heappop
        while router.has_free(cap):
            if cap_limits and running_cap.get(cap, 0) >= cap_limits.get(cap, limit):
                break
            heappop(heap)
            rec = head[K_RECORD]
            task = rec.task
            if task.resources and (full := self._held_resource(task)) is not None:
                queues.park(full, head)
            else:
                group = task.group
                prefer = rec.run.affinity.get(group) if group is not None else None
                choice = router.route(task, rec.avoid, prefer, margin)
                if choice is None:
                    deferred.append(head)
                else:
                    out.append(self._start(rec, choice, now))
            if self.running >= limit or not clean_head(heap):
                return
            head = heap[0]
            if heads and heads[0][0] < head:
                heapq.heappush(heads, (head, cap))
                return

    def _held_resource(self, task: AgentTask) -> str | None:
        """The first of the task's resources that has no free place, if any (acquisition is
        all or nothing: a task takes its resources only when none is full)."""
        held = self._held
        limits = self.config.resource_limits
        for r in task.resources:
            if held.get(r, 0) >= limits.get(r, 1):
                return r
        return None

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
        self.queues.waiting[cap] -= 1
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
            rec.run.affinity[task.group] = inst
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
