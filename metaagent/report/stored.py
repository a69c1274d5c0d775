"""Reports of runs read back from a journal, and the figures of a run resumed from one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.tasks import TaskResult, TaskState
from metaagent.report.batch import aggregate

if TYPE_CHECKING:
    from metaagent.journal.base import StoredRun


def stored_report(stored: StoredRun) -> dict[str, object]:
    """A stored run in the shape of ``metaagent run --json`` (the same contract)."""
    results: list[TaskResult] = []
    for t in stored.tasks:
        r = stored.results.get(t.id)
        attempts = stored.attempts.get(t.id, [])
        state = r.state if r is not None else (TaskState.RUNNING if any(
            a.finished_at is None for a in attempts) else TaskState.PENDING)  # fmt: skip
        results.append(
            TaskResult(
                t.id,
                state,
                None if r is None else r.output,
                None if r is None else r.error,
                attempts[-1].agent if attempts else None,
                attempts,
                t.capability,
                None,
                None if r is None else r.finished_at,
            )
        )
    report = aggregate(results, name=stored.info.name, run_id=stored.info.run_id).to_json()
    report["decisions"] = stored.decisions
    report["finished"] = stored.info.finished
    return report
