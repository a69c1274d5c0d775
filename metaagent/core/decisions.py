"""Typed records of what the scheduler decided, each with its reason.

The four decision types of the requirements (``spawn_agent``, ``route_task``,
``scale_resources``, ``optimize_workflow``) are first-class, next to the task outcomes the core
decides (retry, fail, skip, cancel). Each is journaled and explainable after the fact.
They are plain slotted dataclasses rather than frozen ones, because frozen ones cost several
times more to build on the dispatch path: treat them as read-only. ``TaskCompleted`` and
``RunCompleted`` are notices, not decisions: they tell the runtime that a task succeeded or a
run ended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

DecisionType = Literal[
    "route_task",
    "retry_task",
    "fail_task",
    "skip_task",
    "cancel_task",
    "spawn_agent",
    "terminate_agent",
    "quarantine_agent",
    "scale_resources",
    "optimize_workflow",
    "decompose_task",
]


SCORE_PARTS = ("wait", "run", "retry", "scarcity", "penalty", "success", "cost")
"""Names of a routing score's parts, in the order ``parts`` tuples hold them: expected wait
for a slot, expected duration, expected extra time for failures, scarcity, the soft-fallback
penalty (all seconds), the expected success (0..1) and the expected cost of an attempt (USD).
The score is minus their weighted sum (see ``core.routing``); a new part is a new name here
and a weight there."""


class Candidate(NamedTuple):
    """One agent considered for a task, with its total score and the parts of it."""

    agent: str
    score: float
    parts: tuple[float, ...]

    @property
    def breakdown(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in zip(SCORE_PARTS, self.parts, strict=True)}

    def to_json(self) -> dict[str, object]:
        return {"agent": self.agent, "score": round(self.score, 4), "breakdown": self.breakdown}


@dataclass(slots=True)
class Decision:
    """Base of every decision: when, for which run and task, and why."""

    type: ClassVar[DecisionType]
    at: float
    run_id: str | None
    task_id: str | None
    reason: str

    @property
    def agent(self) -> str | None:
        return None

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["type"] = self.type
        data.setdefault("agent", self.agent)
        return data


@dataclass(slots=True)
class RouteTask(Decision):
    """Run attempt ``attempt`` of a task on agent instance ``instance`` (of spec ``spec``)."""

    type: ClassVar[DecisionType] = "route_task"
    attempt: int
    spec: str
    instance: str
    score: float
    parts: tuple[float, ...]
    # The runners-up as plain (agent, score, parts) tuples: unlike objects, plain tuples of
    # numbers and strings drop out of the garbage collector's view, and a run keeps one
    # decision per attempt. ``candidates`` gives them as ``Candidate`` records.
    ranked: tuple[tuple[str, float, tuple[float, ...]], ...] = ()

    @property
    def agent(self) -> str:
        return self.spec

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The best-scored agents considered, winner first, each with its score breakdown."""
        return tuple(Candidate(*c) for c in self.ranked)

    @property
    def breakdown(self) -> dict[str, float]:
        """The winner's score parts by name (see ``SCORE_PARTS``)."""
        return {k: round(v, 4) for k, v in zip(SCORE_PARTS, self.parts, strict=True)}

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.type,
            "at": self.at,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "agent": self.spec,
            "reason": self.reason,
            "attempt": self.attempt,
            "instance": self.instance,
            "score": round(self.score, 4),
            "breakdown": self.breakdown,
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclass(slots=True)
class RetryTask(Decision):
    """A failed attempt will be tried again (attempt ``next_attempt``) after ``delay_s``."""

    type: ClassVar[DecisionType] = "retry_task"
    next_attempt: int
    delay_s: float
    failed_agent: str
    avoid: tuple[str, ...] = ()

    @property
    def agent(self) -> str:
        return self.failed_agent


@dataclass(slots=True)
class FailTask(Decision):
    """The task failed for good (its attempts are spent or it cannot be placed)."""

    type: ClassVar[DecisionType] = "fail_task"


@dataclass(slots=True)
class SkipTask(Decision):
    """The task will not run because ``upstream`` did not succeed."""

    type: ClassVar[DecisionType] = "skip_task"
    upstream: str


@dataclass(slots=True)
class CancelTask(Decision):
    """The task was cancelled; ``was_running`` says whether an attempt must be stopped."""

    type: ClassVar[DecisionType] = "cancel_task"
    was_running: bool = False
    instance: str | None = None


@dataclass(slots=True)
class SpawnAgent(Decision):
    """Start a new instance of spec ``spec``."""

    type: ClassVar[DecisionType] = "spawn_agent"
    spec: str
    instance: str

    @property
    def agent(self) -> str:
        return self.spec


@dataclass(slots=True)
class TerminateAgent(Decision):
    """Stop agent instance ``instance``."""

    type: ClassVar[DecisionType] = "terminate_agent"
    spec: str
    instance: str
    lost: bool = False  # the instance died or stopped answering (else: retired when idle)

    @property
    def agent(self) -> str:
        return self.spec


@dataclass(slots=True)
class QuarantineAgent(Decision):
    """Circuit breaker: instance ``instance`` takes no work for ``for_s``, then one probe."""

    type: ClassVar[DecisionType] = "quarantine_agent"
    spec: str
    instance: str
    for_s: float

    @property
    def agent(self) -> str:
        return self.spec


@dataclass(slots=True)
class ScaleResources(Decision):
    """The pool of spec ``spec`` goes from ``from_n`` to ``to_n`` instances."""

    type: ClassVar[DecisionType] = "scale_resources"
    spec: str
    from_n: int
    to_n: int

    @property
    def agent(self) -> str:
        return self.spec


@dataclass(slots=True)
class OptimizeWorkflow(Decision):
    """The execution order was changed; ``order`` lists task ids first to last."""

    type: ClassVar[DecisionType] = "optimize_workflow"
    order: tuple[str, ...] = ()
    changes: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class DecomposeTask(Decision):
    """The task was expanded into ``subtasks`` (ids in the run), from a template or a planner.

    The task succeeds when every sub-task does; its output maps sub-task ids to outputs.
    """

    type: ClassVar[DecisionType] = "decompose_task"
    subtasks: tuple[str, ...] = ()
    source: str = "template"


@dataclass(slots=True)
class TaskCompleted:
    """Notice: the attempt succeeded and the task is recorded ``succeeded``."""

    at: float
    run_id: str
    task_id: str


@dataclass(slots=True)
class RunCompleted:
    """Notice: every task of the run is in a terminal state."""

    at: float
    run_id: str


Output = Decision | TaskCompleted | RunCompleted
"""Anything the scheduler answers with."""
