"""What the orchestrator reads back from its journal: a run it already holds for a batch (by
workflow key or idempotency keys), and a recorded run rebuilt in the scheduler to resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.tasks import Outcome
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.decisions import Output
    from metaagent.core.scheduler.records import RunRecord
    from metaagent.core.scheduler.scheduler import Scheduler
    from metaagent.core.tasks import AgentTask
    from metaagent.journal.base import DeferredPart, Journal


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
    scheduler: Scheduler, journal: Journal, run_id: str, now: float
) -> tuple[RunRecord, DeferredPart | None]:
    """Rebuild a journaled run in ``scheduler`` for ``accept``, lazily: the tasks that
    succeeded (outside decompositions) stay in the returned part, to read back once work is
    under way again. Attempts that were in flight are closed as lost, in the journal too.

    Raises ``KeyError`` for a run the journal does not hold.
    """
    stored = journal.load_run(run_id, decisions=False, lazy=True)
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
