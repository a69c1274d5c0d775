"""The scheduler's configuration and its records of runs and tasks.

Kept apart from ``scheduler.py`` so the core's state can be read (by the runtime, the
simulator, reports) without the logic that changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.tasks import AgentTask, Attempt, TaskState

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.core.graph import TaskGraph
    from metaagent.core.instances import AgentInstance
    from metaagent.core.queues import Lane

_PENDING = TaskState.PENDING


@dataclass(slots=True, eq=False)
class TaskRecord:
    """The scheduler's live view of one task."""

    task: AgentTask
    run: RunRecord
    seq: int
    state: TaskState = _PENDING
    attempt: int = 0  # number of the current (or last) attempt; 0 before the first
    attempts: list[Attempt] = field(default_factory=list)
    instance: AgentInstance | None = None
    avoid: frozenset[str] = frozenset()  # specs that failed it (a new set per failure: rare)
    rank: float = 0.0
    est: float = 1.0  # expected seconds, as ranked (fair share charges its run this much)
    penalty_s: float = 0.0  # what the specs in ``avoid`` pay for the retry (its back-off)
    waited: tuple[str, float, str] | None = None  # (spec, since, free one): it chose to wait
    not_before: float = 0.0
    queued: int = 0  # key of its live ready-queue entry (stale entries are skipped)
    output: object = None
    error: str | None = None
    ready_at: float | None = None
    finished_at: float | None = None
    parent: TaskRecord | None = None  # the decomposed task this sub-task belongs to
    children_open: int = 0  # sub-tasks not yet terminal (a decomposed task waits on them)
    children: tuple[str, ...] = ()
    child_failed: str | None = None  # the first sub-task that did not succeed
    feedback: tuple[str, ...] = ()  # what was wrong with the last plan or check, for the retry


@dataclass(slots=True, eq=False)
class RunRecord:
    """One submitted batch: its graph, its tasks and how many are still open."""

    id: str
    name: str
    graph: TaskGraph
    started_at: float
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    open: int = 0
    finished_at: float | None = None
    order: int = 0  # submission order among runs: earlier runs go first within a priority
    unread: UnreadPart | None = None  # a lazily restored run's settled tasks, not read yet
    # group -> the instance of its latest attempt (affinity); kept here, so it goes with the run
    affinity: dict[str, AgentInstance] = field(default_factory=dict)
    priority: int = 0  # the run's weight in fair share is 2 ** priority
    weight: float = 1.0
    vt: float = 0.0  # virtual time: expected slot-seconds started / weight
    ready_n: int = 0  # tasks with a live queue entry
    lanes: dict[str, Lane] = field(default_factory=dict)  # capability -> its queued tasks
    horizon: float = 0.0  # critical path + work / slots, estimated: latest starts count from it
    ranked: bool = True  # ranks follow the estimates (revised on material change)
    learned: frozenset[str] = frozenset()  # capabilities whose learned duration ranks use
    fixed: bool = False  # some ranks come from estimate_s or history (not revised)
    revised_at: int = 0  # the scheduler's result count when its ranks were last computed
    history: Mapping[str, float] = field(default_factory=dict)  # task id -> seconds, earlier runs

    def output_of(self, task_id: str) -> object:
        """The output of a task of this run (``KeyError`` for an unknown one), settled tasks of
        a lazy restore included."""
        rec = self.tasks.get(task_id)
        if rec is not None:
            return rec.output
        if self.unread is not None:
            return self.unread.outputs[task_id]
        raise KeyError(task_id)


@dataclass(slots=True, eq=False)
class UnreadPart:
    """The settled tasks of a lazily restored run (succeeded, not part of a decomposition),
    known by id until ``Scheduler.restore_rest`` builds their records. The run cannot complete
    before then."""

    outputs: Mapping[str, object]  # output by task id (read when a dependent starts)
    order: Sequence[str]  # every task id of the run, in submission order
    first_seq: int  # the first sequence number reserved for them
