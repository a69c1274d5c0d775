"""The scheduler's configuration and its records of runs and tasks.

Kept apart from ``scheduler.py`` so the core's state can be read (by the runtime, the
simulator, reports) without the logic that changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.model import AgentTask, Attempt, TaskState
from metaagent.pool import HealthPolicy
from metaagent.retry import RetryPolicy
from metaagent.routing import AgentInstance, RoutingWeights
from metaagent.scaling import PoolPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.graph import TaskGraph
    from metaagent.learning import RoutingMode

_PENDING = TaskState.PENDING


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Limits and policies of the core. Units are in the names."""

    max_concurrency: int = 64  # attempts running at once, over all agents
    max_queued: int = 10_000  # accepted, unfinished tasks over all runs (backpressure bound)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    weights: RoutingWeights = field(default_factory=RoutingWeights)
    routing: RoutingMode = "deterministic"
    max_candidates: int = 32  # instances scored per routing decision
    seed: int = 0
    learn: bool = True  # False: routing keeps declared proficiencies and never learns
    affinity_margin: float = 0.05  # score a group's previous agent may lose and still be chosen
    aging_interval_s: float = 300.0  # each interval a task has waited counts as +1 priority
    pool: PoolPolicy = field(default_factory=PoolPolicy)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    capability_limits: Mapping[str, int] = field(default_factory=dict)  # running at once
    resource_limits: Mapping[str, int] = field(default_factory=dict)  # holders at once (default 1)

    def problems(self) -> list[str]:
        out = []
        if self.max_concurrency < 1:
            out.append(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_queued < 1:
            out.append(f"max_queued must be at least 1, got {self.max_queued}")
        if self.aging_interval_s <= 0:
            out.append(f"aging_interval_s must be positive, got {self.aging_interval_s}")
        for name, limits in (
            ("capability", self.capability_limits),
            ("resource", self.resource_limits),
        ):
            out.extend(
                f"{name} limit of {k!r} must be at least 1, got {n}" for k, n in limits.items()
                if n < 1
            )  # fmt: skip
        return out + self.pool.problems()


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
    feedback: tuple[str, ...] = ()  # what was wrong with the last plan, for the planner


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
