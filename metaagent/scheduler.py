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

from metaagent.decisions import (
    CancelTask,
    DecomposeTask,
    FailTask,
    OptimizeWorkflow,
    Output,
    RetryTask,
    RouteTask,
    RunCompleted,
    SkipTask,
    TaskCompleted,
)
from metaagent.errors import CapacityError, UnknownCapabilityError, WorkflowError
from metaagent.graph import TaskGraph
from metaagent.learning import Learning
from metaagent.model import AgentSpec, AgentTask, Attempt, Outcome, TaskResult, TaskState
from metaagent.planner import InvalidPlan, expand, parse_plan
from metaagent.pool import Pool
from metaagent.records import RunRecord, SchedulerConfig, TaskRecord
from metaagent.retry import compute_backoff
from metaagent.routing import AgentInstance, AgentState, Choice, Router

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = ["QueueKey", "RunRecord", "Scheduler", "SchedulerConfig", "TaskRecord"]

QueueKey = tuple[int, int, float, int, TaskRecord]
"""A ready-queue entry: (priority key with aging, run order, -critical-path rank, sequence,
record). Within a priority, earlier runs go first and, inside a run, the critical path; the
sequence number is unique, so records are never compared."""

_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING
_AREADY = AgentState.READY


class Scheduler:
    """Pure orchestration core. Every public method takes ``now`` (seconds, any epoch)."""

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

    # --- agents -------------------------------------------------------------------------------

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

    # --- submission ---------------------------------------------------------------------------

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
        results: Mapping[str, tuple[TaskState, object, str | None, float]] | None = None,
    ) -> RunRecord:
        """Validate a batch and build its run without accepting it (nothing changes yet).

        ``results`` holds terminal states already recorded (when a run is restored): those
        tasks are not run again, and their outputs feed their dependents.
        """
        if run_id in self.runs:
            raise WorkflowError(f"run {run_id!r} already exists")
        done = results or {}
        graph = TaskGraph((), where=where)
        # A run read back from its journal passed every check when it was submitted.
        graph.extend(
            tasks,
            where=where,
            done=[t for t, r in done.items() if r[0] is TaskState.SUCCEEDED],
            trusted=results is not None,
        )
        # What the pool's specs offer, live instances or not: a spec scaled to zero still
        # takes work (the pool spawns an instance for it).
        known = self.pool.capabilities()
        for i, task in enumerate(tasks):
            if task.decompose is not None and task.decompose.template:
                continue  # never routed: its template's sub-tasks are
            if task.id not in done and task.capability not in known:
                place = f"tasks[{i}] (id {task.id!r}).capability"
                raise UnknownCapabilityError(
                    task.capability, sorted(known), where=f"{where}: {place}" if where else place
                )
        open_tasks = len(graph) - len(done)
        bound = self.config.max_queued
        if self.queued + open_tasks > bound:
            raise CapacityError(
                f"queue full: {self.queued} tasks are queued and the bound is {bound}; "
                f"a batch of {open_tasks} was refused (nothing accepted was dropped)",
                bound=bound,
            )
        run = RunRecord(run_id, name or run_id, graph, now, open=open_tasks)
        self._runs_seen += 1
        run.order = self._runs_seen
        rank = graph.upward_rank(self._estimate, skip=done)
        seq = self._seq
        for task in tasks:
            seq += 1
            rec = TaskRecord(task, run, seq, rank=rank[task.id])
            stored = done.get(task.id)
            if stored is not None:
                rec.state, rec.output, rec.error, rec.finished_at = stored
            run.tasks[task.id] = rec
        return run

    def accept(self, run: RunRecord, now: float) -> list[Output]:
        """Take a prepared run: its open tasks count against the bound; roots are released."""
        if run.id in self.runs:
            raise WorkflowError(f"run {run.id!r} already exists")
        self._seq += len(run.tasks)
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
        if run.open == 0 and run.finished_at is None:
            out.append(self._complete(run, now))
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
    ) -> RunRecord:
        """Prepare a run recorded earlier, for ``accept``.

        Recorded times (results' ``finished_at``, attempts) are relative to the run's start;
        the run is placed so that they end at ``now``. Attempts that had not finished are
        closed as ``lost``: they do not count against ``max_attempts``, and attempt numbers go
        on from the highest seen, so a late result from one of them is rejected.
        """
        last = max(
            [r[3] for r in results.values()]
            + [a.finished_at or a.started_at for seen in attempts.values() for a in seen]
            + [0.0]
        )
        run = self.prepare(run_id, tasks, now, name=name, results=results)
        run.started_at = now - last
        for done in run.tasks.values():
            if done.finished_at is not None:
                done.finished_at += run.started_at
        for tid, seen in attempts.items():
            rec = run.tasks.get(tid)
            if rec is None:
                continue
            for a in seen:
                if a.finished_at is None:
                    a.finished_at = last
                    a.outcome = Outcome.LOST
                    a.error = "the orchestrator stopped during this attempt"
            rec.attempts = list(seen)
            rec.attempt = max((a.number for a in seen), default=0)
        self._relink_subtasks(run)
        return run

    def _relink_subtasks(self, run: RunRecord) -> None:
        """Give restored sub-tasks their parents back; an unfinished parent waits on them."""
        for rec in run.tasks.values():
            pid = rec.task.metadata.get("parent") if rec.task.metadata else None
            parent = run.tasks.get(pid) if isinstance(pid, str) else None
            if parent is None:
                continue
            rec.parent = parent
            parent.children = (*parent.children, rec.task.id)
            if parent.state.terminal:
                continue
            parent.state = _RUNNING  # it was expanded: it waits, it is not routed again
            if rec.state.terminal:
                if rec.state is not TaskState.SUCCEEDED and parent.child_failed is None:
                    parent.child_failed = rec.task.id
            else:
                parent.children_open += 1
        for rec in run.tasks.values():
            if rec.children and rec.state is _RUNNING and not rec.children_open:
                self._settle.append(rec)

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

    # --- decomposition ------------------------------------------------------------------------

    def _expand(
        self,
        rec: TaskRecord,
        plan: Sequence[AgentTask] | Sequence[Mapping[str, object]],
        now: float,
        source: str,
    ) -> None:
        """Replace ``rec``'s own work by a sub-graph; ``rec`` waits until it settles.

        Raises ``InvalidPlan`` (nothing changed) when the plan is not a valid sub-graph.
        """
        run = rec.run
        subs = expand(rec.task, plan, self.router.capabilities())
        for t in subs:
            if t.id in run.tasks:
                raise InvalidPlan([f"sub-task id {t.id!r} already exists in the run"])
        released = run.graph.extend(subs, where=f"plan of {rec.task.id!r}")
        local = TaskGraph(subs)
        below = rec.rank - self._estimate(rec.task)
        ranks = local.upward_rank(self._estimate)
        for t in subs:
            self._seq += 1
            child = TaskRecord(t, run, self._seq, rank=ranks[t.id] + below, parent=rec)
            run.tasks[t.id] = child
        run.open += len(subs)
        self.queued += len(subs)
        rec.state = _RUNNING  # waiting on its sub-graph; no attempt runs for it
        rec.children = tuple(t.id for t in subs)
        rec.children_open = len(subs)
        self._outbox.append(
            DecomposeTask(
                now,
                run.id,
                rec.task.id,
                f"expanded into {len(subs)} sub-tasks by its {source}; "
                "it succeeds when they all do",
                subtasks=rec.children,
                source=source,
            )
        )
        self._release(run, released, now)

    def _settle_parents(self, now: float) -> list[Output]:
        """End decomposed tasks whose sub-tasks have all ended (and what that releases)."""
        out: list[Output] = []
        while self._settle:
            rec = self._settle.pop()
            if rec.state.terminal:
                continue
            run = rec.run
            if rec.child_failed is not None:
                rec.error = f"sub-task {rec.child_failed!r} did not succeed"
                self._terminal(rec, TaskState.FAILED, now)
                out.append(FailTask(now, run.id, rec.task.id, rec.error))
                out.extend(self._skip_downstream(rec, now))
            else:
                rec.output = {cid: run.tasks[cid].output for cid in rec.children}
                self._terminal(rec, TaskState.SUCCEEDED, now)
                out.append(TaskCompleted(now, run.id, rec.task.id))
                released = [
                    t for t in run.graph.succeeded(rec.task.id) if run.tasks[t].state is _PENDING
                ]
                if released:
                    self._release(run, released, now)
            if run.open == 0 and run.finished_at is None:
                out.append(self._complete(run, now))
        return out

    def _drain(self, out: list[Output], now: float) -> list[Output]:
        """Add what deeper calls decided (expansions, settled parents) to ``out``."""
        if self._settle:
            out.extend(self._settle_parents(now))
        if self._outbox:
            out.extend(self._outbox)
            self._outbox.clear()
        return out

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

    # --- dispatch -----------------------------------------------------------------------------

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
            if _clean_head(heap) and router.has_free(cap):
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
                if self.running >= limit or not _clean_head(heap):
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

    # --- results ------------------------------------------------------------------------------

    def finish(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        outcome: Outcome,
        now: float,
        *,
        output: object = None,
        error: str | None = None,
    ) -> list[Output]:
        """Record how attempt ``attempt`` of a task ended.

        A result from an attempt that is no longer current (the task was re-routed, cancelled or
        already finished) is rejected: it changes nothing and returns no decision.
        """
        run = self.runs.get(run_id)
        rec = run.tasks.get(task_id) if run is not None else None
        if (
            rec is None
            or rec.state is not _RUNNING
            or rec.attempt != attempt
            or rec.instance is None
        ):
            self.stale_results += 1
            return []
        plan = rec.task.decompose
        if outcome is Outcome.SUCCEEDED and plan is not None and plan.planner:
            try:
                steps = parse_plan(output)
                expand(rec.task, steps, self.router.capabilities())
            except InvalidPlan as exc:
                outcome, error = Outcome.ERROR, str(exc)
                rec.feedback = exc.problems
            else:
                return self._planned(rec, steps, now)
        inst = self._end_attempt(rec, outcome, now, error)
        assert inst is not None
        spec = inst.spec.name
        cap = rec.task.capability
        out: list[Output] = []
        if outcome is Outcome.SUCCEEDED:
            self.pool.on_success(inst)
            self.learning.record(spec, cap, True, rec.attempts[-1].duration_s)
            rec.output = output
            rec.error = None
            self._terminal(rec, TaskState.SUCCEEDED, now)
            assert run is not None
            out.append(TaskCompleted(now, run_id, task_id))
            # A dependent cancelled while it waited stays cancelled: terminal states are final.
            released = [t for t in run.graph.succeeded(task_id) if run.tasks[t].state is _PENDING]
            if released:
                self._release(run, released, now)
            self._drain(out, now)
            if run.open == 0 and run.finished_at is None:
                out.append(self._complete(run, now))
            return out
        if outcome is Outcome.CANCELLED:
            # Stopped from outside the scheduler (say, at shutdown): not the agent's failure, and
            # the task must not stay ``running`` with no attempt behind it.
            rec.error = error or "cancelled"
            self._terminal(rec, TaskState.CANCELLED, now)
            out.append(
                CancelTask(now, run_id, task_id, "the attempt was cancelled", False, inst.id)
            )
            out.extend(self._skip_downstream(rec, now))
            if rec.run.open == 0:
                out.append(self._complete(rec.run, now))
            return out
        out.extend(self.pool.on_failure(inst, now))
        self.learning.record(
            spec,
            cap,
            False,
            rec.attempts[-1].duration_s if outcome is Outcome.ERROR else None,
        )
        out.extend(self._failed_attempt(rec, spec, outcome, error, now))
        return self._drain(out, now)

    def _planned(
        self, rec: TaskRecord, steps: Sequence[Mapping[str, object]], now: float
    ) -> list[Output]:
        """A planner's attempt returned a valid plan: close the attempt, expand the task."""
        inst = self._end_attempt(rec, Outcome.SUCCEEDED, now, None)
        assert inst is not None
        self.pool.on_success(inst)
        self.learning.record(inst.spec.name, rec.task.capability, True, rec.attempts[-1].duration_s)
        rec.feedback = ()
        self._expand(rec, steps, now, f"planner {inst.spec.name}")
        return self._drain([], now)

    def _end_attempt(
        self, rec: TaskRecord, outcome: Outcome, now: float, error: str | None
    ) -> AgentInstance | None:
        """Close the current attempt and free its slot and resources."""
        att = rec.attempts[-1]
        att.finished_at = now - rec.run.started_at
        att.outcome = outcome
        att.error = error
        inst = rec.instance
        rec.instance = None
        if inst is not None:
            inst.running -= 1
            inst.tasks_done += 1
            inst.busy_s += now
            if inst.running == 0:
                inst.idle_since = now
            if inst.state is _AREADY and inst.running < inst.slots:
                self.router.adjust_free(inst, +1)
        self.running -= 1
        self._running_cap[rec.task.capability] -= 1
        held = self._held
        for r in rec.task.resources:
            left = held[r] - 1
            if left:
                held[r] = left
            else:
                del held[r]
            for key in self._parked.pop(r, ()):
                if key[4].state is _READY and key[4].queued == key[3]:
                    # Back in its queue under its old key: it keeps its place.
                    heapq.heappush(self._ready.setdefault(key[4].task.capability, []), key)
        return inst

    def _failed_attempt(
        self,
        rec: TaskRecord,
        spec: str,
        outcome: Outcome,
        error: str | None,
        now: float,
        *,
        agent_lost: bool = False,
    ) -> list[Output]:
        task = rec.task
        out: list[Output] = []
        rec.error = error
        charged = sum(1 for a in rec.attempts if a.outcome is not Outcome.LOST)
        if charged < task.max_attempts:
            # When its agent was lost, the task goes to another agent after the first step of
            # the back-off however many attempts it made: the agent failed, and failover must
            # stay fast. (Attempts still count against max_attempts; restarts back off.)
            step = 1 if agent_lost else rec.attempt
            delay = compute_backoff(self.config.retry, step, self.rng)
            rec.avoid = rec.avoid | {spec}
            rec.state = _READY
            rec.not_before = now + delay
            self._seq += 1
            rec.queued = 0
            heapq.heappush(self._delayed, (rec.not_before, self._seq, rec))
            others = self.router.specs_for(task.capability) - rec.avoid
            where = (
                f"preferring another agent ({', '.join(sorted(others))})"
                if others
                else "no other agent offers this capability, so any may take it"
            )
            out.append(
                RetryTask(
                    now,
                    rec.run.id,
                    task.id,
                    f"attempt {rec.attempt} on {spec} ended {outcome.value}"
                    f"{': ' + _last_line(error) if error else ''}; retry in {delay:.2f}s, {where}",
                    next_attempt=rec.attempt + 1,
                    delay_s=delay,
                    failed_agent=spec,
                    avoid=tuple(sorted(rec.avoid)),
                )
            )
            return out
        summary = "; ".join(
            f"#{a.number} {a.agent}: {a.outcome.value if a.outcome else '?'}" for a in rec.attempts
        )
        out.append(
            FailTask(
                now,
                rec.run.id,
                task.id,
                f"all {len(rec.attempts)} attempts failed ({summary})",
            )
        )
        self._terminal(rec, TaskState.FAILED, now)
        out.extend(self._skip_downstream(rec, now))
        if rec.run.open == 0:
            out.append(self._complete(rec.run, now))
        return out

    def _skip_downstream(self, rec: TaskRecord, now: float) -> list[Output]:
        out: list[Output] = []
        run = rec.run
        for tid in run.graph.downstream(rec.task.id):
            dep = run.tasks[tid]
            if dep.state.terminal:
                continue
            dep.error = f"upstream task {rec.task.id!r} {rec.state.value}"
            self._terminal(dep, TaskState.SKIPPED, now)
            out.append(SkipTask(now, run.id, tid, dep.error, upstream=rec.task.id))
        return out

    def _terminal(self, rec: TaskRecord, state: TaskState, now: float) -> None:
        if rec.state is _READY and rec.queued:
            self._depth[rec.task.capability] -= 1  # its queue entry is now stale
        rec.state = state
        rec.finished_at = now
        rec.run.open -= 1
        self.queued -= 1
        parent = rec.parent
        if parent is not None:
            parent.children_open -= 1
            if state is not TaskState.SUCCEEDED and parent.child_failed is None:
                parent.child_failed = rec.task.id
            if parent.children_open == 0:
                self._settle.append(parent)

    def _complete(self, run: RunRecord, now: float) -> RunCompleted:
        run.finished_at = now
        return RunCompleted(now, run.id)

    # --- cancellation and time ----------------------------------------------------------------

    def cancel(self, run_id: str, task_ids: Iterable[str] | None, now: float) -> list[Output]:
        """Cancel the named tasks of a run (all its open tasks when ``task_ids`` is None).

        Tasks depending on a cancelled one are skipped; a decomposed task's open sub-tasks are
        cancelled with it. Unknown ids raise ``WorkflowError``.
        """
        run = self.runs.get(run_id)
        if run is None:
            raise WorkflowError(f"unknown run {run_id!r}")
        ids = list(run.tasks) if task_ids is None else list(task_ids)
        for tid in ids:
            if tid not in run.tasks:
                raise WorkflowError(f"run {run_id!r} has no task {tid!r}")
        out: list[Output] = []
        self._cancel(run, ids, now, out)
        if ids and run.open == 0 and run.finished_at is None:
            out.append(self._complete(run, now))
        return self._drain(out, now)

    def _cancel(self, run: RunRecord, ids: list[str], now: float, out: list[Output]) -> None:
        for tid in ids:
            rec = run.tasks[tid]
            if rec.state.terminal:
                continue
            was_running = rec.state is _RUNNING and rec.instance is not None
            instance = rec.instance.id if rec.instance is not None else None
            if was_running:
                self._end_attempt(rec, Outcome.CANCELLED, now, "cancelled")
            rec.error = "cancelled"
            self._terminal(rec, TaskState.CANCELLED, now)
            out.append(CancelTask(now, run.id, tid, "cancelled on request", was_running, instance))
            out.extend(self._skip_downstream(rec, now))
            if rec.children_open:
                # A decomposed task: its open sub-tasks go with it (it is already final, so
                # their ending does not settle it again).
                self._cancel(run, [c for c in rec.children if not run.tasks[c].state.terminal],
                             now, out)  # fmt: skip

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

    # --- reading ------------------------------------------------------------------------------

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
        del self.runs[run_id]


_ORDER_SHOWN = 50  # tasks an optimize_workflow decision lists


def _queue_order(rec: TaskRecord) -> tuple[int, float, int]:
    return -rec.task.priority, -rec.rank, rec.seq


def _clean_head(heap: list[QueueKey]) -> bool:
    """Drop stale entries (cancelled, skipped or requeued tasks) off the top of a ready queue;
    true if a live entry is left on top."""
    while heap:
        head = heap[0]
        rec = head[4]
        if rec.state is _READY and rec.queued == head[3]:
            return True
        heapq.heappop(heap)
    return False


def _last_line(text: str) -> str:
    line = text.strip().splitlines()[-1] if text.strip() else ""
    return line[:200]
