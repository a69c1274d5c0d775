"""What the orchestrator reads back from its journal: a run it already holds for a batch (by
workflow key or idempotency keys), a recorded run rebuilt in the scheduler to resume, and a
finished run's retry (a new run that keeps what succeeded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.core.graph import TaskGraph
from metaagent.core.tasks import Outcome, TaskState
from metaagent.errors import WorkflowError
from metaagent.journal.history import task_durations
from metaagent.journal.leases import Owner

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from metaagent.core.decisions import Output
    from metaagent.core.scheduler.records import RunRecord
    from metaagent.core.scheduler.scheduler import Scheduler
    from metaagent.core.tasks import AgentTask
    from metaagent.journal.base import DeferredPart, Journal, StoredResult, StoredRun


def known_run(journal: Journal, tasks: Sequence[AgentTask], key: str | None) -> str | None:
    """The journaled run this batch already is, if any: the unfinished run with the workflow
    ``key``, or the run holding every one of the batch's idempotency keys.

    Raises ``WorkflowError`` when only some of the keys are journaled (a batch that mixes old
    and new work cannot be told apart from a mistake).
    """
    if key is not None:
        found = journal.find_unfinished(key)
        if found is not None:
            return found
    keyed = [t.key for t in tasks if t.key is not None]
    if not keyed:
        return None
    holders = {journal.find_task(k) for k in keyed}
    runs = {h[0] for h in holders if h is not None}
    if not runs:
        return None
    if len(runs) == 1 and None not in holders and len(keyed) == len(tasks):
        return runs.pop()
    raise WorkflowError(
        "some idempotency keys of this batch are already journaled (in run "
        + ", ".join(sorted(runs))
        + ") and some are not: resubmit the same batch, or use new keys"
    )


def restore_run(
    scheduler: Scheduler, journal: Journal, run_id: str, now: float, lazy: bool = True
) -> tuple[RunRecord, DeferredPart | None]:
    """Rebuild a journaled run in ``scheduler`` for ``accept``, lazily: the tasks that
    succeeded (outside decompositions) stay in the returned part, to read back once work is
    under way again. Attempts that were in flight are closed as lost, in the journal too.

    Raises ``KeyError`` for a run the journal does not hold.
    """
    stored = journal.load_run(run_id, decisions=False, lazy=lazy)
    part = stored.deferred
    run = scheduler.restore(
        run_id,
        stored.tasks,
        now,
        name=stored.info.name,
        results=stored.results,
        attempts=stored.attempts,
        settled=None if part is None else part.outputs,
        order=None if part is None else part.order,
        last_at=None if part is None else part.last_at,
    )
    for tid, seen in stored.attempts.items():
        for a in seen:
            if a.outcome is Outcome.LOST:
                journal.attempt_finished(run_id, tid, a)
    return run, part


def read_settled(scheduler: Scheduler, run_id: str, part: DeferredPart, now: float) -> list[Output]:
    """Read back the settled tasks a lazy restore left out and add them to the run; returns
    what that decides (the run may complete). Raises ``JournalError`` if the read fails."""
    rest = part.read()
    return scheduler.restore_rest(
        run_id, rest.tasks, now, results=rest.results, attempts=rest.attempts
    )


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """A finished run's tasks split for a retry: ``rerun`` (ids, in submission order) run
    again in the new run; ``kept`` keep the result the old run recorded for them."""

    rerun: list[str]
    kept: dict[str, StoredResult]


def retry_plan(
    stored: StoredRun, tasks: Sequence[AgentTask], only: Collection[str] = ()
) -> RetryPlan:
    """Which of ``tasks`` (the workflow's, as it is now) a retry of the finished run
    ``stored`` runs again: the named ones (``only``), or, when none are named, every task that
    did not succeed; with all that depends on them. Every other task keeps its recorded result;
    a task the old run does not hold runs.

    Raises ``WorkflowError`` for a run that has not finished (resume it instead), a task id
    the workflow does not have, or tasks with idempotency keys (a key is done once, in the run
    that holds it).
    """
    run_id = stored.info.run_id
    if not stored.info.finished:
        raise WorkflowError(f"run {run_id!r} has not finished: resume it instead")
    graph = TaskGraph(tasks)
    unknown = sorted(set(only) - graph.tasks.keys())
    if unknown:
        raise WorkflowError(f"run {run_id!r} has no task {', '.join(map(repr, unknown))}")
    keyed = [t.id for t in tasks if t.key is not None]
    if keyed:
        raise WorkflowError(
            f"tasks {', '.join(keyed[:5])} carry idempotency keys: they cannot run again in a "
            "new run"
        )
    results = stored.results
    named = set(only) or {
        t.id for t in tasks if t.id not in results or results[t.id].state is not TaskState.SUCCEEDED
    }
    again = set(named)
    for tid in named:
        again.update(graph.downstream(tid))
    rerun = [t.id for t in tasks if t.id in again or t.id not in results]
    kept = {t.id: results[t.id] for t in tasks if t.id not in again and t.id in results}
    return RetryPlan(rerun, kept)


def open_retry(
    journal: Journal,
    run_id: str,
    name: str,
    tasks: Sequence[AgentTask],
    kept: dict[str, StoredResult],
    *,
    key: str | None,
    source: str | None,
    workdir: str | None,
) -> None:
    """Journal a new run of ``tasks`` whose ``kept`` tasks are already finished with their
    recorded results (at time 0), so that resuming it runs only the others.

    Its lease is held while the results go in, so no other process resumes it half written.
    Raises ``KnownRun`` when an unfinished run with ``key`` exists (nothing applied) and
    ``JournalError`` when the journal cannot be written.
    """
    owner = Owner.here()
    journal.open_run(run_id, name, tasks, key=key, source=source, workdir=workdir, owner=owner)
    for tid, r in kept.items():
        journal.task_finished(run_id, tid, r.state, r.output, r.error, 0.0)
    journal.flush()
    journal.release(owner, run_id)


def durations_of(journal: Journal, key: str | None) -> dict[str, float]:
    """How long each task of earlier finished runs with ``key`` took (mean of its succeeded
    attempts, ``journal.history``): what ranks a new run of the same workflow. Empty without
    a key or a journal file (a memory journal keeps no history across processes)."""
    path = getattr(journal, "path", None)
    if key is None or not isinstance(path, Path):
        return {}
    return task_durations(path, key)
