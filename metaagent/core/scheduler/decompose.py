"""How a run's graph moves on: tasks released (queued, or expanded into sub-graphs), tasks and
runs ended, and decomposed tasks settled once their sub-graphs have ended.

Release and decomposition live together because each leads to the other: a released task may
expand into sub-tasks, whose release may expand again, and a sub-task's end may settle its
parent, whose success releases the parent's dependents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.decisions import DecomposeTask, FailTask, RunCompleted, SkipTask, TaskCompleted
from metaagent.core.graph import TaskGraph
from metaagent.core.planner import InvalidPlan, expand
from metaagent.core.scheduler.dispatch import Dispatching
from metaagent.core.scheduler.records import TaskRecord
from metaagent.core.tasks import TaskState

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from metaagent.core.decisions import Output
    from metaagent.core.scheduler.records import RunRecord
    from metaagent.core.tasks import AgentTask

_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING
_SUCCEEDED = TaskState.SUCCEEDED


class Decomposing(Dispatching):
    """Releases ready tasks, expands decomposed ones and ends tasks, parents and runs."""

    def _release(self, run: RunRecord, ids: Iterable[str], now: float) -> list[TaskRecord]:
        """Move tasks to ``ready`` and queue them (or expand them); return those queued."""
        recs: list[TaskRecord] = []
        tasks = run.tasks
        push_all = self.queues.push_all
        pending = self._pending_cap
        first = 0  # recs[first:] are not queued yet: they are, in one go, in their order
        for tid in ids:
            rec = tasks[tid]
            rec.ready_at = now
            task = rec.task
            cap = task.capability
            n = pending.get(cap, 0)
            if n:
                pending[cap] = n - 1
            plan = task.decompose
            if plan is not None and plan.template:
                push_all(recs[first:])  # before the sub-tasks: the same order as one by one
                first = len(recs)
                self._expand_template(rec, plan.template, now)
                continue
            rec.state = _READY
            recs.append(rec)
        push_all(recs[first:] if first else recs)
        return recs

    def _expand_template(self, rec: TaskRecord, template: Sequence[AgentTask], now: float) -> None:
        """Expand ``rec`` by its template, or fail it when the template may not be expanded
        (too large, the queue bound, an invalid sub-graph): a template is not retried, and its
        sub-tasks are never added past a bound."""
        try:
            self._check_plan(len(template))
            self._expand(rec, template, now, "template")
        except InvalidPlan as exc:
            rec.error = f"its template was not expanded: {exc}"
            self._terminal(rec, TaskState.FAILED, now)
            self._outbox.append(FailTask(now, rec.run.id, rec.task.id, rec.error))
            self._outbox.extend(self._skip_downstream(rec, now))

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
        estimate = self._estimator(run.history)
        below = rec.rank - estimate(rec.task)
        ranks = local.upward_rank(estimate)
        queues = self.queues
        pending = self._pending_cap
        for t in subs:
            queues.seq += 1
            child = TaskRecord(t, run, queues.seq, rank=ranks[t.id] + below, parent=rec,
                               est=estimate(t))  # fmt: skip
            run.tasks[t.id] = child
            pending[t.capability] = pending.get(t.capability, 0) + 1
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

    def _terminal(self, rec: TaskRecord, state: TaskState, now: float) -> None:
        """Record ``rec``'s final state; a decomposed parent whose last open sub-task this was
        is settled by the next ``_drain``."""
        if rec.state is _READY and rec.queued:
            rec.state = state  # its queue entry is stale from now on
            self.queues.discard(rec)
        elif rec.state is _PENDING:
            cap = rec.task.capability
            n = self._pending_cap.get(cap, 0)
            if n:
                self._pending_cap[cap] = n - 1
        rec.state = state
        rec.finished_at = now
        rec.run.open -= 1
        self.queued -= 1
        parent = rec.parent
        if parent is not None:
            parent.children_open -= 1
            if state is not _SUCCEEDED and parent.child_failed is None:
                parent.child_failed = rec.task.id
            if parent.children_open == 0:
                self._settle.append(parent)

    def _skip_downstream(self, rec: TaskRecord, now: float) -> list[Output]:
        """Skip every open task that depends, directly or not, on ``rec`` (which did not
        succeed)."""
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

    def _complete(self, run: RunRecord, now: float, out: list[Output]) -> None:
        """End the run if nothing of it is open (and all of it has been read back)."""
        if run.open == 0 and run.finished_at is None and run.unread is None:
            run.finished_at = now
            out.append(RunCompleted(now, run.id))

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
                self._terminal(rec, _SUCCEEDED, now)
                out.append(TaskCompleted(now, run.id, rec.task.id))
                released = [
                    t for t in run.graph.succeeded(rec.task.id) if run.tasks[t].state is _PENDING
                ]
                if released:
                    self._release(run, released, now)
            self._complete(run, now, out)
        return out

    def _drain(self, out: list[Output], now: float) -> list[Output]:
        """Add what deeper calls decided (expansions, settled parents) to ``out``."""
        if self._settle:
            out.extend(self._settle_parents(now))
        if self._outbox:
            out.extend(self._outbox)
            self._outbox.clear()
        return out
