"""A run's ``BatchResult`` from the scheduler's records, with its utilisation figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.errors import RunFailed
from metaagent.gcpause import paused_gc
from metaagent.report.batch import BatchResult, aggregate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from metaagent.core.scheduler.scheduler import Scheduler
    from metaagent.runtime.handle import RunHandle


def run_result(
    sched: Scheduler, handle: RunHandle, now: float, *, max_concurrency: int, born: float
) -> BatchResult:
    """The result of ``handle``'s run now. ``born`` is when this process's pool started: a run
    that started earlier was resumed, and what earlier processes offered is unknown, so its
    utilisation is over the slots it has now rather than over a capacity it cannot know."""
    run_id = handle.run_id
    run = sched.runs[run_id]
    end = run.finished_at if run.finished_at is not None else now
    offered: dict[str, float] | None
    offered, slots = sched.pool.capacity(handle.started_at, end)
    limit = max_concurrency
    if run.started_at < born:
        offered, limit = None, min(limit, sum(slots.values())) or limit
    with paused_gc():  # a result per task, built in one go
        return aggregate(
            sched.results(run_id), slots=limit, name=handle.name, run_id=run_id,
            decisions=handle.decisions, started_at=handle.started_at, agent_slots=slots,
            capacity=offered,
        )  # fmt: skip


def fail_unfinished(handles: Iterable[RunHandle], result: Callable[[str], BatchResult]) -> None:
    """Settle every run still going with ``RunFailed`` carrying its partial result: whoever
    awaits ``result()`` must not wait forever for work that will not run (at close)."""
    for h in handles:
        if not h.done():
            partial = result(h.run_id)
            h.settle(
                RunFailed(
                    f"the orchestrator was closed before run {h.run_id!r} finished",
                    result=partial,
                )
            )
