"""Restoring runs recorded earlier: their records rebuilt from a journal, for ``accept``.

A lazy restore leaves a run's settled tasks (succeeded, not part of a decomposition) out at
first; ``restore_rest`` builds their records later, each in its place in the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.graph import TaskGraph
from metaagent.core.scheduler.outcomes import Outcomes
from metaagent.core.scheduler.records import RunRecord, TaskRecord, UnreadPart
from metaagent.core.tasks import Outcome, TaskState
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.core.decisions import Output
    from metaagent.core.tasks import AgentTask, Attempt

    Results = Mapping[str, tuple[TaskState, object, str | None, float]]
    """Recorded results by task id: (state, output, error, finished_at since the run's start)."""
    Attempts = Mapping[str, Sequence[Attempt]]
    """Recorded attempts by task id, in attempt order."""

_RUNNING = TaskState.RUNNING
_SUCCEEDED = TaskState.SUCCEEDED


class Restoring(Outcomes):
    """Rebuilds runs from what a journal recorded."""

    def restore(
        self,
        run_id: str,
        tasks: Sequence[AgentTask],
        now: float,
        *,
        name: str | None = None,
        results: Results,
        attempts: Attempts,
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
        done = {tid for tid, r in results.items() if r[0] is _SUCCEEDED}
        done.update(settled or ())
        graph = TaskGraph(())
        rank = graph.restore(tasks, done, self._estimator(), skip=results)
        open_tasks = len(tasks) - len(results)
        self._check_room(open_tasks)
        if last_at is None:
            last_at = _latest(results, attempts)
        run = RunRecord(run_id, name or run_id, graph, now - last_at, open=open_tasks)
        seq = self._restore_records(run, tasks, rank, results)
        estimate = self._estimator()
        work = 0.0
        for rec in run.tasks.values():
            if not rec.state.terminal:
                rec.est = estimate(rec.task)
                work += rec.est
        run.horizon = max(rank.values(), default=0.0) + work / self.router_slots()
        _close_attempts(run.tasks, attempts, last_at)
        if settled is not None and order is not None:
            run.unread = UnreadPart(settled, order, seq)
        self._runs_seen += 1
        run.order = self._runs_seen
        self._relink_subtasks(run)
        return run

    def _restore_records(
        self,
        run: RunRecord,
        tasks: Sequence[AgentTask],
        rank: Mapping[str, float],
        results: Results,
    ) -> int:
        """Build the records of ``tasks`` with their results; return the next sequence number.

        Sequence numbers keep submission order among the tasks that can still be queued;
        settled ones, never queued again, take the numbers after them (``restore_rest``).
        """
        t0 = run.started_at
        records = run.tasks
        known = self.pool.capabilities()
        check = self._check_capability
        seq = self.queues.seq + 1
        for i, task in enumerate(tasks):
            tid = task.id
            rec = TaskRecord(task, run, seq, rank=rank[tid])
            seq += 1
            stored = results.get(tid)
            if stored is not None:
                rec.state, rec.output, rec.error, at = stored
                rec.finished_at = at + t0
            else:
                check(task, i, known, None)
            records[tid] = rec
        return seq

    def _relink_subtasks(self, run: RunRecord) -> None:
        """Give restored sub-tasks their parents back; an unfinished parent waits on them."""
        tasks = run.tasks
        for rec in tasks.values():
            pid = rec.task.metadata.get("parent") if rec.task.metadata else None
            parent = tasks.get(pid) if isinstance(pid, str) else None
            if parent is not None:
                _link(rec, parent)
        self._settle.extend(
            rec for rec in tasks.values()
            if rec.children and rec.state is _RUNNING and not rec.children_open
        )  # fmt: skip

    def restore_rest(
        self,
        run_id: str,
        tasks: Sequence[AgentTask],
        now: float,
        *,
        results: Results,
        attempts: Attempts,
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
        merged = _merged_records(run, part, tasks, results, attempts)
        run.graph.add_settled(tasks)
        run.tasks = merged
        run.unread = None
        out: list[Output] = []
        self._complete(run, now, out)
        return out


def _latest(results: Results, attempts: Attempts) -> float:
    """The latest time a run's results and attempts recorded (0 for none)."""
    return max(
        [r[3] for r in results.values()]
        + [a.finished_at or a.started_at for seen in attempts.values() for a in seen]
        + [0.0]
    )


def _close_attempts(records: Mapping[str, TaskRecord], attempts: Attempts, at: float) -> None:
    """Give each record its recorded attempts; those not finished end ``lost`` at ``at``."""
    for tid, seen in attempts.items():
        holder = records.get(tid)
        if holder is None:
            continue
        for a in seen:
            if a.finished_at is None:
                a.finished_at = at
                a.outcome = Outcome.LOST
                a.error = "the orchestrator stopped during this attempt"
        holder.attempts = list(seen)
        holder.attempt = max((a.number for a in seen), default=0)


def _link(child: TaskRecord, parent: TaskRecord) -> None:
    """Attach a restored sub-task to its parent; an open parent waits on its open sub-tasks."""
    child.parent = parent
    parent.children = (*parent.children, child.task.id)
    if parent.state.terminal:
        return
    parent.state = _RUNNING  # it was expanded: it waits, it is not routed again
    if not child.state.terminal:
        parent.children_open += 1
    elif child.state is not _SUCCEEDED and parent.child_failed is None:
        parent.child_failed = child.task.id


def _merged_records(
    run: RunRecord,
    part: UnreadPart,
    tasks: Sequence[AgentTask],
    results: Results,
    attempts: Attempts,
) -> dict[str, TaskRecord]:
    """The run's records with those of its settled tasks built in, in submission order again;
    sub-tasks expanded since the restore go last."""
    seq, t0 = part.first_seq, run.started_at
    by_id = {t.id: t for t in tasks}
    before = run.tasks
    merged: dict[str, TaskRecord] = {}
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
    return merged
