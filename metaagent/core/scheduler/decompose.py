"""Decomposition in the core: expanding a task into a sub-graph and settling it afterwards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.decisions import DecomposeTask, FailTask, Output, TaskCompleted
from metaagent.core.graph import TaskGraph
from metaagent.core.instances import AgentState
from metaagent.core.planner import InvalidPlan, expand
from metaagent.core.scheduler.base import SchedulerState
from metaagent.core.scheduler.records import TaskRecord
from metaagent.core.tasks import AgentTask, Outcome, TaskState

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.core.scheduler.records import RunRecord

_READY = TaskState.READY
_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING
_AREADY = AgentState.READY


class Decomposing(SchedulerState):
    """Expands decomposed tasks and ends them when their sub-graphs have ended."""

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
