"""The state the scheduler's parts share, declared once so each part type-checks on its own.

``Scheduler`` is assembled from mixins (``Dispatching``, ``Outcomes``, ``Decomposing``); each
reads and changes the attributes below, which ``Scheduler.__init__`` creates. The methods one
part calls on another are declared here for the type checker only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.scheduler.records import TaskRecord

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Mapping, Sequence

    from metaagent.core.decisions import Output, RouteTask
    from metaagent.core.instances import AgentInstance
    from metaagent.core.learning import Learning
    from metaagent.core.pool import Pool
    from metaagent.core.routing import Choice, Router
    from metaagent.core.scheduler.config import SchedulerConfig
    from metaagent.core.scheduler.records import RunRecord
    from metaagent.core.tasks import AgentTask, Outcome, TaskState

QueueKey = tuple[int, int, float, int, TaskRecord]
"""A ready-queue entry: (priority key with aging, run order, -critical-path rank, sequence,
record). Within a priority, earlier runs go first and, inside a run, the critical path; the
sequence number is unique, so records are never compared."""


class SchedulerState:
    """Attributes (and cross-part methods) of the scheduler, for its mixins."""

    config: SchedulerConfig
    rng: random.Random
    learning: Learning
    router: Router
    pool: Pool
    agents: dict[str, AgentInstance]
    runs: dict[str, RunRecord]
    running: int
    peak_running: int
    queued: int  # accepted, unfinished tasks
    stale_results: int  # results rejected by fencing
    _seq: int
    _ready: dict[str, list[QueueKey]]
    _delayed: list[tuple[float, int, TaskRecord]]
    _held: dict[str, int]  # resource -> holders
    _parked: dict[str, list[QueueKey]]  # entries waiting for a full resource, by resource
    _depth: dict[str, int]  # capability -> tasks in its ready queue
    _running_cap: dict[str, int]  # capability -> attempts running
    _runs_seen: int
    _settle: list[TaskRecord]  # decomposed tasks whose sub-tasks all ended
    _outbox: list[Output]  # decisions made deep inside a call, returned by it
    _affinity: dict[tuple[str, str], AgentInstance]  # (run, group) -> last agent

    if TYPE_CHECKING:

        def _estimate(self, task: AgentTask) -> float: ...

        def _release(self, run: RunRecord, ids: Iterable[str], now: float) -> list[TaskRecord]: ...

        def _enqueue(self, rec: TaskRecord, now: float) -> None: ...

        def _start(self, rec: TaskRecord, choice: Choice, now: float) -> RouteTask: ...

        def _end_attempt(
            self, rec: TaskRecord, outcome: Outcome, now: float, error: str | None
        ) -> AgentInstance | None: ...

        def _failed_attempt(
            self, rec: TaskRecord, spec: str, outcome: Outcome, error: str | None, now: float
        ) -> list[Output]: ...

        def _terminal(self, rec: TaskRecord, state: TaskState, now: float) -> None: ...

        def _skip_downstream(self, rec: TaskRecord, now: float) -> list[Output]: ...

        def _complete(self, run: RunRecord, now: float, out: list[Output]) -> None: ...

        def _drain(self, out: list[Output], now: float) -> list[Output]: ...

        def _planned(
            self, rec: TaskRecord, steps: Sequence[Mapping[str, object]], now: float
        ) -> list[Output]: ...
