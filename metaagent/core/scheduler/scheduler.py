"""The sans-I/O core: events in, typed decisions out.

The ``Scheduler`` owns every run's dependency graph, the ready queues, its view of the agents
and the routing statistics. It never sleeps, awaits, or reads a clock: each call carries ``now``
and answers with decisions for the caller to carry out. Tests drive it on virtual time; the
runtime and the simulator drive the very same object.
"""

from __future__ import annotations

import heapq
import random
from typing import TYPE_CHECKING

from metaagent.core.decisions import OptimizeWorkflow, Output
from metaagent.core.graph import TaskGraph
from metaagent.core.instances import AgentInstance, AgentState
from metaagent.core.learning import Learning
from metaagent.core.pool import Pool
from metaagent.core.routing import Router
from metaagent.core.scheduler.base import QueueKey
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.core.scheduler.decompose import Decomposing
from metaagent.core.scheduler.dispatch import Dispatching
from metaagent.core.scheduler.outcomes import Outcomes
from metaagent.core.scheduler.records import RunRecord, TaskRecord, UnreadPart
from metaagent.core.tasks import AgentTask, Attempt, Outcome, TaskResult, TaskState
from metaagent.errors import CapacityError, UnknownCapabilityError, WorkflowError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from metaagent.core.specs import AgentSpec

__all__ = ["QueueKey", "RunRecord", "Scheduler", "SchedulerConfig", "TaskRecord"]


_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING
_AREADY = AgentState.READY


class Scheduler(Dispatching, Outcomes, Decomposing):
    """Pure orchestration core. Every public method takes ``now`` (seconds, any epoch).

    Its parts live in mixins, one concept each: ``Dispatching`` (queues and routing),
    ``Outcomes`` (how attempts end), ``Decomposing`` (sub-graphs); the state they share is
    declared in ``SchedulerState``.
    """

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        problems = self.config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.rng = random.Random(self.config.seed)
        self.learning = Learning(
            mode=self.config.routing,
            rng=random.Random(self.config.seed + 1),
            frozen=not self.config.learn,
        )
        self.router = Router(self.learning, self.config.weights, self.config.max_candidates)
        self.pool = Pool(
            self.router,
            self.config.pool,
            self.config.health,
            self.rng,
            max_concurrency=self.config.max_concurrency,
            capability_limits=self.config.capability_limits,
        )
        self.agents = self.pool.instances
        self.runs: dict[str, RunRecord] = {}
        self.running = 0
        self.peak_running = 0
        self.queued = 0  # accepted, unfinished tasks
        self.stale_results = 0  # results rejected by fencing
        self._seq = 0
        self._ready: dict[str, list[QueueKey]] = {}
        self._delayed: list[tuple[float, int, TaskRecord]] = []
        self._held: dict[str, int] = {}  # resource -> holders
        # Queue entries waiting for a resource, by the (full) resource they wait on.
        self._parked: dict[str, list[QueueKey]] = {}
        self._depth: dict[str, int] = {}  # capability -> tasks in its ready queue
        self._running_cap: dict[str, int] = {}  # capability -> attempts running
        self._runs_seen = 0
        self._settle: list[TaskRecord] = []  # decomposed tasks whose sub-tasks all ended
        self._outbox: list[Output] = []  # decisions made deep inside a call, returned by it
        self._affinity: dict[tuple[str, str], AgentInstance] = {}  # (run, group) -> last agent

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
    ) -> list[Output]:
        """Accept a batch as a new run (all or nothing) and release its root tasks.

        Raises ``WorkflowError``/``CycleError`` for a bad graph, ``UnknownCapabilityError`` for a
        capability no agent offers, ``CapacityError`` when the queue bound would be passed.
        """
        return self.accept(self.prepare(run_id, tasks, now, name=name, where=where), now)

    def prepare(
        self,
        run_id: str,
        tasks: Sequence[AgentTask],
        now: float,
        *,
        name: str | None = None,
        where: str | None = None,
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
        for i, task in enumerate(tasks):
            self._check_capability(task, i, known, where)
        open_tasks = len(graph)
        self._check_room(open_tasks)
        run = RunRecord(run_id, name or run_id, graph, now, open=open_tasks)
        self._runs_seen += 1
        run.order = self._runs_seen
        rank = graph.upward_rank(self._estimate)
        seq = self._seq
        for task in tasks:
            seq += 1
            run.tasks[task.id] = TaskRecord(task, run, seq, rank=rank[task.id])
        return run

    def accept(self, run: RunRecord, now: float) -> list[Output]:
        """Take a prepared run: its open tasks count against the bound; roots are released."""
        if run.id in self.runs:
            raise WorkflowError(f"run {run.id!r} already exists")
        self._seq += len(run.tasks) if run.unread is None else len(run.unread.order)
        self.runs[run.id] = run
        self.queued += run.open
        out: list[Output] = []
        graph = run.graph
        releasable = [
            tid
            for tid, rec in run.tasks.items()
            if rec.state is _PENDING and graph.remaining[tid] == 0
        ]
        # A task left pending behind a dependency that did not succeed (a restored run) is
        # skipped now, as it would have been had the process not stopped.
        for rec in list(run.tasks.values()):
            if rec.state.terminal and rec.state is not TaskState.SUCCEEDED:
                out.extend(self._skip_downstream(rec, now))
        queued = self._release(run, releasable, now)
        if len(queued) > 1:
            # Record the head of the new order (what runs first), not all of a large batch.
            first = heapq.nsmallest(_ORDER_SHOWN, queued, key=_queue_order)
            order = [r.task.id for r in first]
            if order != [r.task.id for r in queued[:_ORDER_SHOWN]]:
                more = len(queued) - len(order)
                out.append(
                    OptimizeWorkflow(
                        now,
                        run.id,
                        None,
                        "ready tasks ordered by priority, then critical-path rank (longest "
                        "estimated work below first), then age"
                        + (f"; the first {len(order)} of {len(queued)} shown" if more else ""),
                        order=tuple(order),
                        changes={r.task.id: round(r.rank, 3) for r in first},
                    )
                )
        self._drain(out, now)
        self._complete(run, now, out)
        return out

    def restore(
        self,
        run_id: str,
        tasks: Sequence[AgentTask],
        now: float,
        *,
        name: str | None = None,
        results: Mapping[str, tuple[TaskState, object, str | None, float]],
        attempts: Mapping[str, Sequence[Attempt]],
        settled: Mapping[str, object] | None = None,
        order: Sequence[str] | None = None,
        last_at: float | None = None,
    ) -> RunRecord:
        """Prepare a run recorded earlier, for ``accept``.

        Recorded times (results' ``finished_at``, attempts) are relative to the run's start;
        the run is placed so that they end at ``now``. Attempts that had not finished are
        closed as ``lost``: they do not count against ``max_attempts``, and attempt numbers go
        on from the highest seen, so a late result from one of them is rejected.

        A lazy restore leaves the run's settled tasks (succeeded, not part of a decomposition)
        out of ``tasks``: ``settled`` maps their ids to their outputs, ``order`` lists every
        task id of the run in submission order and ``last_at`` is the latest time recorded.
        ``restore_rest`` brings their records later; the run cannot complete before that.
        Raises as ``prepare`` does (a capability no agent offers any more, a full queue).
        """
        if run_id in self.runs:
            raise WorkflowError(f"run {run_id!r} already exists")
        if (settled is None) != (order is None):
            raise ValueError("settled and order go together")
        done = {tid for tid, r in results.items() if r[0] is TaskState.SUCCEEDED}
        if settled is not None:
            done.update(settled)
        graph = TaskGraph(())
        rank = graph.restore(tasks, done, self._estimator(), skip=results)
        open_tasks = len(tasks) - len(results)
        self._check_room(open_tasks)
        if last_at is None:
            last_at = max(
                [r[3] for r in results.values()]
                + [a.finished_at or a.started_at for seen in attempts.values() for a in seen]
                + [0.0]
            )
        run = RunRecord(run_id, name or run_id, graph, now - last_at, open=open_tasks)
        t0 = run.started_at
        records = run.tasks
        known = self.pool.capabilities()
        # Sequence numbers keep submission order among the tasks that can still be queued;
        # settled ones, never queued again, take the numbers after them (``restore_rest``).
        seq = self._seq + 1
        for i, task in enumerate(tasks):
            tid = task.id
            rec = TaskRecord(task, run, seq, rank=rank[tid])
            seq += 1
            stored = results.get(tid)
            if stored is not None:
                rec.state, rec.output, rec.error, at = stored
                rec.finished_at = at + t0
            else:
                self._check_capability(task, i, known, None)
            records[tid] = rec
        for tid, seen in attempts.items():
            holder = records.get(tid)
            if holder is None:
                continue
            for a in seen:
                if a.finished_at is None:
                    a.finished_at = last_at
                    a.outcome = Outcome.LOST
                    a.error = "the orchestrator stopped during this attempt"
            holder.attempts = list(seen)
            holder.attempt = max((a.number for a in seen), default=0)
        if settled is not None and order is not None:
            run.unread = UnreadPart(settled, order, seq)
        self._runs_seen += 1
        run.order = self._runs_seen
        self._relink_subtasks(run)
        return run

    def restore_rest(
        self,
        run_id: str,
        tasks: Sequence[AgentTask],
        now: float,
        *,
        results: Mapping[str, tuple[TaskState, object, str | None, float]],
        attempts: Mapping[str, Sequence[Attempt]],
    ) -> list[Output]:
        """Build the records of a lazily restored run's settled tasks, each in its place in
        the run, and complete the run if nothing else of it is open.

        ``tasks`` must be exactly the settled tasks named to ``restore``, each with its result
        (``WorkflowError`` otherwise: nothing changes).
        """
        run = self.runs.get(run_id)
        part = None if run is None else run.unread
        if run is None or part is None:
            raise WorkflowError(f"run {run_id!r} has no settled tasks left to restore")
        wanted = part.outputs
        if len(tasks) != len(wanted) or any(
            t.id not in wanted or t.id not in results for t in tasks
        ):
            raise WorkflowError(
                f"run {run_id!r}: the settled tasks read back do not match those left out "
                f"({len(tasks)} read, {len(wanted)} expected)"
            )
        seq, t0 = part.first_seq, run.started_at
        by_id = {t.id: t for t in tasks}
        before = run.tasks
        merged: dict[str, TaskRecord] = {}
        # In submission order again; sub-tasks expanded since the restore go last.
        for tid in part.order:
            rec = before.get(tid)
            if rec is None:
                state, output, error, at = results[tid]
                rec = TaskRecord(by_id[tid], run, seq, state=state, output=output, error=error)
                seq += 1
                rec.finished_at = at + t0
                seen = attempts.get(tid)
                if seen:  # in attempt order, as recorded
                    rec.attempts = list(seen)
                    rec.attempt = seen[-1].number
            merged[tid] = rec
        for tid, rec in before.items():
            if tid not in merged:
                merged[tid] = rec
        run.graph.add_settled(tasks)
        run.tasks = merged
        run.unread = None
        out: list[Output] = []
        self._complete(run, now, out)
        return out

    @staticmethod
    def _check_capability(
        task: AgentTask, index: int, known: Collection[str], where: str | None
    ) -> None:
        """Raise ``UnknownCapabilityError`` for a task no spec can serve (a task decomposed by
        a template is never routed itself: its sub-tasks are)."""
        if task.capability in known or (task.decompose is not None and task.decompose.template):
            return
        place = f"tasks[{index}] (id {task.id!r}).capability"
        raise UnknownCapabilityError(
            task.capability, sorted(known), where=f"{where}: {place}" if where else place
        )

    def _check_room(self, open_tasks: int) -> None:
        """Raise ``CapacityError`` if ``open_tasks`` more would pass the queue bound."""
        bound = self.config.max_queued
        if self.queued + open_tasks > bound:
            raise CapacityError(
                f"queue full: {self.queued} tasks are queued and the bound is {bound}; "
                f"a batch of {open_tasks} was refused (nothing accepted was dropped)",
                bound=bound,
            )

    def _estimator(self) -> Callable[[AgentTask], float]:
        """``_estimate`` with each capability's learned duration looked up once, for ranking
        many tasks in one go."""
        durations: dict[str, float] = {}
        learned = self.learning.capability_duration

        def estimate(task: AgentTask) -> float:
            base = durations.get(task.capability)
            if base is None:
                base = durations[task.capability] = learned(task.capability) or 1.0
            return base * (0.5 + task.complexity)

        return estimate

    def _estimate(self, task: AgentTask) -> float:
        base = self.learning.capability_duration(task.capability) or 1.0
        return base * (0.5 + task.complexity)

    def _release(self, run: RunRecord, ids: Iterable[str], now: float) -> list[TaskRecord]:
        """Move tasks to ``ready`` and queue them (or expand them); return those queued."""
        recs = []
        for tid in ids:
            rec = run.tasks[tid]
            rec.ready_at = now
            plan = rec.task.decompose
            if plan is not None and plan.template:
                self._expand(rec, plan.template, now, "template")
                continue
            rec.state = _READY
            self._enqueue(rec, now)
            recs.append(rec)
        return recs

    def tick(self, now: float) -> list[Output]:
        """Let time pass: retries whose back-off ended become routable, the pool restarts,
        probes, scales and lifts rate limits as due. Then dispatch."""
        self._promote_delayed(now)
        pool = self.pool
        out: list[Output] = []
        if not pool.quiet():
            out.extend(pool.tick(now, self._depth, self.running, self._running_cap))
        out.extend(self.dispatch(now))
        return self._drain(out, now)

    def next_wakeup(self) -> float | None:
        """The earliest time at which ``tick`` has something to do, if any."""
        wake = self._delayed[0][0] if self._delayed else None
        pool = self.pool.next_wakeup(self._depth)
        if pool is not None and (wake is None or pool < wake):
            return pool
        return wake

    def queue_depth(self) -> dict[str, int]:
        """Ready tasks per capability (waiting for a slot)."""
        return {cap: n for cap, n in self._depth.items() if n}

    def waiting_reasons(self) -> dict[str, str]:
        """Why each capability with queued work is not being served, when it is not."""
        out: dict[str, str] = {}
        for cap, n in self._depth.items():
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

    def results(self, run_id: str) -> list[TaskResult]:
        """Each task's result, times in seconds since the run started, in submission order."""
        run = self.runs[run_id]
        t0 = run.started_at
        out: list[TaskResult] = []
        for rec in run.tasks.values():
            # A finished task's attempts never change again: its list is shared, not copied.
            attempts = rec.attempts if rec.state.terminal else list(rec.attempts)
            last = attempts[-1].agent if attempts else None
            out.append(
                TaskResult(
                    rec.task.id,
                    rec.state,
                    rec.output,
                    rec.error if rec.state is not TaskState.SUCCEEDED else None,
                    last,
                    attempts,
                    rec.task.capability,
                    None if rec.ready_at is None else rec.ready_at - t0,
                    None if rec.finished_at is None else rec.finished_at - t0,
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
