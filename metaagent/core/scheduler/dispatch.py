"""Dispatch: the choice of what runs next, on which agent, from the ready queues."""

from __future__ import annotations

import functools
import heapq
from typing import TYPE_CHECKING

from metaagent.core.decisions import RouteTask
from metaagent.core.instances import AgentState
from metaagent.core.queues import K_RECORD
from metaagent.core.routing.repeat import why as repeat_why
from metaagent.core.scheduler.base import SchedulerBase
from metaagent.core.tasks import Attempt, TaskState

if TYPE_CHECKING:
    from metaagent.core.queues import Head, Lane, QueueKey
    from metaagent.core.routing.router import Choice
    from metaagent.core.scheduler.records import TaskRecord
    from metaagent.core.tasks import AgentTask

_RUNNING = TaskState.RUNNING
_AREADY = AgentState.READY


@functools.lru_cache(maxsize=1024)
def _starts_now(capability: str) -> str:
    """The reason of a route that starts now, the same for every task of a capability."""
    return f"earliest expected finish for {capability!r}: starts now"


class Dispatching(SchedulerBase):
    """Routes ready work: lane heads in a heap, resources all or nothing."""

    def dispatch(self, now: float) -> list[RouteTask]:
        """Route as many ready tasks as free slots and the global limit allow.

        The best lane head goes first (the run with the least virtual time, then the lane's
        own order); a head that cannot be placed now (its resources are held, only agents below
        its floor are free, or it waits for a busy agent that will finish it sooner) stays
        queued for this round. The heads of the lanes are kept in a heap of their own, so a
        decision costs O(log n) however many lanes have work waiting; at most ``lookahead``
        tasks of one lane are passed over per round.
        """
        out: list[RouteTask] = []
        queues = self.queues
        if queues.delayed:
            queues.promote(now)
        limit = self.config.max_concurrency
        if self.running >= limit or not queues.lanes:
            return out
        deferred: list[QueueKey] = []  # left queued this round
        router = self.router
        router.begin_round()
        router.round.begin()  # alike tasks of the round share their candidates' scores
        heads = queues.heads(router.has_free)
        heappop = heapq.heappop
        passed: dict[str, int] = {}  # per capability, tasks passed over this round
        # Within one round slots only get taken, never freed: a capability that cannot take
        # work now is dropped for the round.
        try:
            while heads and self.running < limit:
                _, lane = heappop(heads)
                self._take(lane, heads, deferred, out, now, passed)
        finally:
            router.round.end()
        if deferred:
            queues.put_back(deferred)
        queues.prune()
        return out

    def _take(
        self,
        lane: Lane,
        heads: list[Head],
        deferred: list[QueueKey],
        out: list[RouteTask],
        now: float,
        passed: dict[str, int],
    ) -> None:
        """Take from ``lane`` while its head stays the best of all: one busy lane never goes
        through the heads' heap at all. A lane whose head is no longer the best goes back into
        ``heads``; one whose capability is out of slots (or of look-ahead) does not."""
        queues = self.queues
        heap = lane.heap
        cap = lane.cap
        run = lane.run
        clean_head = queues.clean_head
        router = self.router
        config = self.config
        limit = config.max_concurrency
        cap_limits = config.capability_limits
        running_cap = self._running_cap
        heappop = heapq.heappop
        lookahead = config.lookahead
        skipped = passed.get(cap, 0)
        if skipped >= lookahead or passed.get("", 0) >= 4 * lookahead:
            return
        head = heap[0]
        while router.has_free(cap):
            if cap_limits and running_cap.get(cap, 0) >= cap_limits.get(cap, limit):
                break
            heappop(heap)
            rec = head[K_RECORD]
            task = rec.task
            if task.resources and (full := self._held_resource(task)) is not None:
                queues.park(full, head)
            elif not self._place(rec, out, now):
                deferred.append(head)
                skipped += 1
                passed[cap] = skipped
                total = passed[""] = passed.get("", 0) + 1  # over every capability
                if skipped >= lookahead or total >= 4 * lookahead:
                    return
            if self.running >= limit or not clean_head(heap):
                return
            head = heap[0]
            if heads and heads[0][0] < (run.vt, head):
                heapq.heappush(heads, ((run.vt, head), lane))
                return

    def _place(self, rec: TaskRecord, out: list[RouteTask], now: float) -> bool:
        """Route ``rec``: start it (true), or leave it queued (false): nothing can take it
        now, or it waits for a busy agent (whose next slot it claims for the round)."""
        task = rec.task
        self.decisions += 1
        group = task.group
        prefer = rec.run.affinity.get(group) if group is not None else None
        floors = self.config.min_proficiency
        floor = task.min_proficiency or 0.0
        if floors:
            floor = max(floor, floors.get(task.capability, 0.0))
        final = task.max_attempts - rec.attempt <= 1  # a failure now fails the task
        choice = self.router.route(
            task, now, rec.avoid, rec.penalty_s, prefer, self.config.affinity_margin, floor, final
        )
        if choice is None:
            return False
        if choice.instance is None:
            self.router.claim(choice, now)
            if rec.waited is None and choice.free_alternative is not None:
                rec.waited = (choice.entry.name, now, choice.free_alternative)
            return False
        out.append(self._start(rec, choice, now))
        return True

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
        assert inst is not None
        task = rec.task
        rec.state = _RUNNING
        rec.attempt += 1
        rec.instance = inst
        spec = inst.spec.name
        run = rec.run
        # Attempt times are relative to the run's start: reports use them as they are.
        rec.attempts.append(Attempt(rec.attempt, spec, inst.id, now - run.started_at))
        cap = task.capability
        queues = self.queues
        queues.waiting[cap] -= 1
        if task.resources:
            queues.need_res[cap] -= 1
        run.ready_n -= 1  # fair share: the run is charged the task's expected slot-seconds
        vt = run.vt
        if vt > queues.vnow:
            queues.vnow = vt
        run.vt = vt + rec.est / run.weight
        rec.queued = 0
        inst.busy_s -= now  # slot-seconds: the attempt's end adds ``now`` back
        had_free = inst.state is _AREADY and inst.running < inst.slots
        inst.running += 1
        router = self.router
        if had_free:
            router.adjust_free(inst, -1)
        router.started(inst, rec, rec.attempt, now, choice.duration_s)
        self.running += 1
        self._running_cap[cap] = self._running_cap.get(cap, 0) + 1
        if self.running > self.peak_running:
            self.peak_running = self.running
        if inst.spec.rate_per_min is not None:
            self.pool.on_start(inst, now)
        for r in task.resources:
            self._held[r] = self._held.get(r, 0) + 1
        if task.group is not None:
            run.affinity[task.group] = inst
        # Positional: the dataclass's ``__init__`` parses keywords at a cost, once per attempt.
        return RouteTask(now, run.id, task.id, self._why(rec, choice, now), rec.attempt, spec,
                         inst.id, choice.score, choice.parts, choice.ranked)  # fmt: skip

    def _why_cheapest(self, rec: TaskRecord, choice: Choice) -> str:
        """The objective ``cheapest_meeting``: the price and success that chose the agent."""
        parts = choice.parts
        target = self.config.weights.quality_target
        cap = rec.task.capability
        if choice.met:
            return (
                f"cheapest meeting success {target:g} for {cap!r} at complexity "
                f"{rec.task.complexity:g}: expected ${parts[6]:.4g} per attempt, success "
                f"{parts[5]:.2f}"
            )
        return (
            f"cheapest meeting success {target:g} for {cap!r}: no candidate is expected to "
            f"reach it at complexity {rec.task.complexity:g}, so the best expected success "
            f"({parts[5]:.2f}, ${parts[6]:.4g} per attempt)"
        )

    def _why(self, rec: TaskRecord, choice: Choice, now: float) -> str:
        """The route's reason: the objective's figures, and why waiting was or was not taken."""
        task = rec.task
        parts = choice.parts
        if choice.affinity:
            why = (
                f"affinity: {rec.instance.id if rec.instance else '?'} handled earlier tasks of "
                f"group {task.group!r} and costs within {self.config.affinity_margin:.0%} "
                "of the best"
            )
        elif choice.met is not None:
            why = self._why_cheapest(rec, choice)
        else:
            why = _starts_now(task.capability)
        ranked = choice.ranked
        if len(ranked) > 1 and ranked[1][2][0] > 0:
            why += f", runs ~{parts[1]:.3g}s, success {parts[5]:.2f}"
            rival = ranked[1]
            why += (
                f"; waiting {rival[2][0]:.3g}s for {rival[0]} would cost {-rival[1]:.3g}s "
                f"against {-choice.score:.3g}s"
            )
        waited = rec.waited
        if waited is not None:
            why += f"; waited {now - waited[1]:.3g}s for {waited[0]} while {waited[2]} was free"
            rec.waited = None
        if rec.avoid:
            why += repeat_why(choice.entry.name, choice.score, choice.repeats, rec.avoid,
                              rec.penalty_s)  # fmt: skip
        return why
