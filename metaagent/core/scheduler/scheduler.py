"""The sans-I/O core: events in, typed decisions out.

The ``Scheduler`` owns every run's dependency graph, the ready queues, its view of the agents
and the routing statistics. It never sleeps, awaits, or reads a clock: each call carries ``now``
and answers with decisions for the caller to carry out. Tests drive it on virtual time; the
runtime and the simulator drive the very same object.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from metaagent.core.decisions import OptimizeWorkflow, Output
from metaagent.core.graph import TaskGraph
from metaagent.core.instances import AgentState
from metaagent.core.queues import QueueKey
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.core.scheduler.records import RunRecord, TaskRecord
from metaagent.core.scheduler.restore import Restoring
from metaagent.core.tasks import TERMINAL, Outcome, TaskResult, TaskState
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.core.instances import AgentInstance
    from metaagent.core.specs import AgentSpec
    from metaagent.core.tasks import AgentTask

__all__ = ["QueueKey", "RunRecord", "Scheduler", "SchedulerConfig", "TaskRecord"]


_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING
_SUCCEEDED = TaskState.SUCCEEDED


class Scheduler(Restoring):
    """Pure orchestration core. Every public method takes ``now`` (seconds, any epoch).

    Built as a chain of parts, one concept each, every one a subclass of the one before:
    ``SchedulerBase`` (the state, created once), ``Dispatching`` (routing from the queues),
    ``Decomposing`` (release, expansion, ends of tasks and runs), ``Outcomes`` (how attempts
    end), ``Restoring`` (runs read back from a journal); this class adds the events of agents,
    runs and time.
    """

    def add_agent(
        self, spec: AgentSpec, now: float, instance_id: str | None = None
    ) -> AgentInstance:
        """Register a ready instance of ``spec`` (named after the spec unless told otherwise)."""
        problems = spec.problems()
        if problems:
            raise WorkflowError("; ".join(problems), where=f"agent {spec.name!r}")
        return self.pool.add_instance(spec, now, instance_id)

    def add_spec(self, spec: AgentSpec, now: float) -> list[Output]:
        """Register a spec with its pool limits; answers ``spawn_agent`` for ``min_instances``.

        Each spawned instance takes work once the caller reports ``agent_ready``.
        """
        problems = spec.problems()
        if problems:
            raise WorkflowError("; ".join(problems), where=f"agent {spec.name!r}")
        return list(
            self.pool.add_spec(
                spec, now, min_instances=spec.min_instances, max_instances=spec.max_instances
            )
        )

    def agent_ready(self, instance_id: str, now: float) -> None:
        """A spawned instance has started."""
        self.pool.ready(instance_id, now)

    def agent_stopped(self, instance_id: str, now: float) -> None:
        """A terminated instance has exited."""
        self.pool.stopped(instance_id, now)

    def agent_lost(self, instance_id: str, now: float, reason: str) -> list[Output]:
        """An instance died, was killed or stopped answering heartbeats.

        Its running attempts end as crashes (a late result from them is rejected) and are
        retried on other agents; the pool restarts the instance if it needs it.
        """
        inst = self.pool.instances.get(instance_id)
        if inst is None:
            return []
        out: list[Output] = []
        victims = [
            rec
            for run in self.runs.values()
            if run.open
            for rec in run.tasks.values()
            if rec.state is _RUNNING and rec.instance is inst
        ]
        out.extend(self.pool.lost(instance_id, now, reason))
        for rec in victims:
            self._end_attempt(rec, Outcome.CRASH, now, f"agent {instance_id} lost: {reason}")
            self.learning.record(inst.spec.name, rec.task.capability, False, None)
            out.extend(
                self._failed_attempt(
                    rec,
                    inst.spec.name,
                    Outcome.CRASH,
                    f"agent {instance_id} lost: {reason}",
                    now,
                    agent_lost=True,
                )
            )
        return self._drain(out, now)

    def known_capabilities(self) -> list[str]:
        return self.router.capabilities()

    def submit(
        self,
        run_id: str,
        tasks: Sequence[AgentTask],
        now: float,
        *,
        name: str | None = None,
        where: str | None = None,
        priority: int = 0,
        history: Mapping[str, float] | None = None,
    ) -> list[Output]:
        """Accept a batch as a new run (all or nothing) and release its root tasks.

        Raises ``WorkflowError``/``CycleError`` for a bad graph, ``UnknownCapabilityError`` for a
        capability no agent offers, ``CapacityError`` when the queue bound would be passed.
        ``priority`` weighs the run in fair share (``2 ** priority``); ``history`` gives task
        durations seen in earlier runs of the same workflow, by task id, for ranking.
        """
        run = self.prepare(
            run_id, tasks, now, name=name, where=where, priority=priority, history=history
        )
        return self.accept(run, now)

    def prepare(
        self,
        run_id: str,
        tasks: Sequence[AgentTask],
        now: float,
        *,
        name: str | None = None,
        where: str | None = None,
        priority: int = 0,
        history: Mapping[str, float] | None = None,
    ) -> RunRecord:
        """Validate a batch and build its run without accepting it (nothing changes yet).

        A run recorded earlier is rebuilt by ``restore`` instead.
        """
        if run_id in self.runs:
            raise WorkflowError(f"run {run_id!r} already exists")
        graph = TaskGraph(tasks, where=where)
        # What the pool's specs offer, live instances or not: a spec scaled to zero still
        # takes work (the pool spawns an instance for it).
        known = self.pool.capabilities()
        floors = self.config.min_proficiency
        for i, task in enumerate(tasks):
            self._check_capability(task, i, known, where)
            if task.min_proficiency is not None or floors:
                self._check_floor(task, i, where)
        open_tasks = len(graph)
        self._check_room(open_tasks)
        weight = 2.0 ** max(-10, min(10, priority))
        run = RunRecord(run_id, name or run_id, graph, now, open=open_tasks, priority=priority,
                        weight=weight, history=history or {})  # fmt: skip
        self._runs_seen += 1
        run.order = self._runs_seen
        seq = self.queues.seq
        for task in tasks:
            seq += 1
            run.tasks[task.id] = TaskRecord(task, run, seq)
        rank = self._rank(run, self._estimator(run.history), fresh=True)
        for tid, rec in run.tasks.items():
            rec.rank = rank[tid]
        return run

    def _check_floor(self, task: AgentTask, index: int, where: str | None) -> None:
        """Raise ``WorkflowError`` for a task whose ``min_proficiency`` no spec meets."""
        cap = task.capability
        floor = max(task.min_proficiency or 0.0, self.config.min_proficiency.get(cap, 0.0))
        best = max((p.spec.capabilities.get(cap, -1.0) for p in self.pool.specs.values()),
                   default=-1.0)  # fmt: skip
        if best >= floor or (task.decompose is not None and task.decompose.template):
            return
        place = f"tasks[{index}] (id {task.id!r}).min_proficiency"
        raise WorkflowError(
            f"no agent offers {cap!r} at proficiency {floor:g} or more (the best declares "
            f"{max(best, 0.0):g})",
            where=f"{where}: {place}" if where else place,
        )

    def accept(self, run: RunRecord, now: float) -> list[Output]:
        """Take a prepared run: its open tasks count against the bound; roots are released."""
        if run.id in self.runs:
            raise WorkflowError(f"run {run.id!r} already exists")
        self.queues.seq += len(run.tasks) if run.unread is None else len(run.unread.order)
        self.runs[run.id] = run
        self.queued += run.open
        if run.vt < self.queues.vnow:
            run.vt = self.queues.vnow  # a new run starts at the current virtual time
        pending = self._pending_cap
        remaining = run.graph.remaining
        releasable: list[str] = []
        settled = False  # a restored run has tasks that are not pending
        for tid, rec in run.tasks.items():
            if rec.state is _PENDING:
                cap = rec.task.capability
                pending[cap] = pending.get(cap, 0) + 1
                if remaining[tid] == 0:
                    releasable.append(tid)
            else:
                settled = True
        out: list[Output] = []
        # A task left pending behind a dependency that did not succeed (a restored run) is
        # skipped now, as it would have been had the process not stopped.
        for rec in list(run.tasks.values()) if settled else ():
            if rec.state.terminal and rec.state is not _SUCCEEDED:
                out.extend(self._skip_downstream(rec, now))
        queued = self._release(run, releasable, now)
        if len(queued) > 1:
            decision = _order_decision(run.id, queued, now)
            if decision is not None:
                out.append(decision)
        self._drain(out, now)
        self._complete(run, now, out)
        return out

    def tick(self, now: float) -> list[Output]:
        """Let time pass: retries whose back-off ended become routable, the pool restarts,
        probes, scales and lifts rate limits as due. Then dispatch."""
        queues = self.queues
        queues.promote(now)
        pool = self.pool
        out: list[Output] = []
        if not pool.quiet():
            # Scaling counts runnable demand only: tasks that wait on a held resource do not
            # make the pool grow (capability limits are applied by the pool itself).
            out.extend(pool.tick(now, self._runnable(), self.running, self._running_cap))
        out.extend(self.dispatch(now))
        return self._drain(out, now)

    def _runnable(self) -> dict[str, int]:
        """Waiting tasks per capability, those that need a held resource counted only up to
        the resource places free now (at least one)."""
        held = self._held
        limits = self.config.resource_limits
        free = sum(max(0, limits.get(r, 1) - n) for r, n in held.items())
        return self.queues.runnable(max(1, free))

    def next_wakeup(self) -> float | None:
        """The earliest time at which ``tick`` has something to do, if any."""
        wake = self.queues.next_delayed()
        pool = self.pool.next_wakeup(self._runnable())
        if pool is not None and (wake is None or pool < wake):
            return pool
        return wake

    def queue_depth(self) -> dict[str, int]:
        """Ready tasks per capability (waiting for a slot)."""
        return self.queues.depth()

    def waiting_reasons(self) -> dict[str, str]:
        """Why each capability with queued work is not being served, when it is not."""
        out: dict[str, str] = {}
        for cap, n in self.queues.waiting.items():
            if not n:
                continue
            insts = self.router.instances(cap)
            live = [i for i in insts if i.state is AgentState.READY]
            if not live:
                states = sorted({i.state.value for i in insts}) or ["none registered"]
                out[cap] = f"{n} tasks wait: no live agent offers {cap!r} ({', '.join(states)})"
        return out

    def task(self, run_id: str, task_id: str) -> TaskRecord:
        return self.runs[run_id].tasks[task_id]

    def task_states(self, run_id: str) -> dict[str, TaskState]:
        """Every task of a run with its state now, in submission order; the settled tasks of a
        lazily restored run (known by id until they are read back) are ``succeeded``."""
        run = self.runs[run_id]
        records = run.tasks
        if run.unread is None:
            return {tid: rec.state for tid, rec in records.items()}
        done = TaskState.SUCCEEDED
        states = {tid: records[tid].state if tid in records else done for tid in run.unread.order}
        states.update((tid, rec.state) for tid, rec in records.items())
        return states

    def results(self, run_id: str) -> list[TaskResult]:
        """Each task's result, times in seconds since the run started, in submission order."""
        run = self.runs[run_id]
        t0 = run.started_at
        out: list[TaskResult] = []
        append = out.append
        for rec in run.tasks.values():
            state = rec.state
            task = rec.task
            ready, finished = rec.ready_at, rec.finished_at
            # A finished task's attempts never change again: its list is shared, not copied.
            if state is _SUCCEEDED:
                attempts, error = rec.attempts, None
            else:
                attempts = rec.attempts if state in TERMINAL else list(rec.attempts)
                error = rec.error
            append(
                TaskResult(
                    task.id,
                    state,
                    rec.output,
                    error,
                    attempts[-1].agent if attempts else None,
                    attempts,
                    task.capability,
                    None if ready is None else ready - t0,
                    None if finished is None else finished - t0,
                )
            )
        return out

    def forget(self, run_id: str) -> None:
        """Drop a finished run from memory."""
        run = self.runs[run_id]
        if run.open:
            raise WorkflowError(f"run {run_id!r} still has {run.open} open tasks")
        if run.unread is not None:
            raise WorkflowError(f"run {run_id!r} is still being read back from its journal")
        del self.runs[run_id]


_ORDER_SHOWN = 50  # tasks an optimize_workflow decision lists


def _queue_order(rec: TaskRecord) -> tuple[int, float, int]:
    return -rec.task.priority, -rec.rank, rec.seq


def _order_decision(run_id: str, queued: list[TaskRecord], now: float) -> OptimizeWorkflow | None:
    """The order in which a run's first ready tasks will go, when it is not their submission
    order: its head (what runs first), not all of a large batch."""
    head = queued[0]
    priority, rank, seq = head.task.priority, head.rank, head.seq - 1
    for rec in queued:  # all alike and in sequence: they go in their order
        if rec.rank != rank or rec.task.priority != priority or rec.seq <= seq:
            break
        seq = rec.seq
    else:
        return None
    first = heapq.nsmallest(_ORDER_SHOWN, queued, key=_queue_order)
    order = [r.task.id for r in first]
    if order == [r.task.id for r in queued[:_ORDER_SHOWN]]:
        return None
    more = len(queued) - len(order)
    return OptimizeWorkflow(
        now,
        run_id,
        None,
        "ready tasks ordered by priority, then critical-path rank (longest estimated work below "
        "first), then age" + (f"; the first {len(order)} of {len(queued)} shown" if more else ""),
        order=tuple(order),
        changes={r.task.id: round(r.rank, 3) for r in first},
    )
