"""Tasks as every layer sees them: ``AgentTask``, its states, attempts and results.

Names follow the product requirements (``AgentTask``, ``TaskResult``, ``BatchResult``). These are
plain slotted dataclasses: they are created on the hot path, so validation happens once where a
value enters (the graph, the workflow loader), not in every constructor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

TaskId = NewType("TaskId", str)
"""A task's id, unique within its run (``depends_on`` refers to these)."""

RunId = NewType("RunId", str)
"""A run: one submitted batch of tasks and its dependency graph."""

AgentId = NewType("AgentId", str)
"""One live agent instance (a spec may have several instances)."""


class TaskState(StrEnum):
    """Where a task is in its life. Terminal states are final and recorded once."""

    PENDING = "pending"  # waiting on dependencies
    READY = "ready"  # releasable; queued for an agent (or waiting out a retry back-off)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # an upstream task did not succeed

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[TaskState] = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED}
)
ACTIVE: frozenset[TaskState] = frozenset({TaskState.PENDING, TaskState.READY, TaskState.RUNNING})


class Outcome(StrEnum):
    """How one attempt ended. Timeout, crash and error are told apart."""

    SUCCEEDED = "succeeded"
    ERROR = "error"  # the runner raised or the command exited non-zero
    TIMEOUT = "timeout"  # ran past timeout_s and was stopped
    CRASH = "crash"  # the agent process died (signal, lost)
    VERIFY_FAILED = "verify_failed"  # the task's check rejected the output
    CANCELLED = "cancelled"
    LOST = "lost"  # the orchestrator stopped mid-attempt; not charged against max_attempts
    BUDGET_EXCEEDED = "budget_exceeded"  # not started: a budget it falls under is spent; final

    @property
    def failed(self) -> bool:
        return self not in (Outcome.SUCCEEDED, Outcome.CANCELLED, Outcome.LOST)


@dataclass(frozen=True, slots=True)
class VerifySpec:
    """A command run after an attempt's output is in; a non-zero exit fails the attempt.

    The output is written to stdin and to a file named by the ``{output_file}`` placeholder.
    """

    argv: tuple[str, ...]
    timeout_s: float = 120.0


@dataclass(frozen=True, slots=True)
class Decompose:
    """How a task is broken into sub-tasks: by ``template`` (sub-tasks given up front) or by a
    ``planner`` (the task runs on an agent of its capability; its JSON output is the plan).

    ``template`` holds ``AgentTask`` objects whose ids and dependencies are local to the plan.
    """

    template: tuple[AgentTask, ...] = ()
    planner: bool = False

    def __post_init__(self) -> None:
        if bool(self.template) == self.planner:
            raise ValueError("decompose needs exactly one of: a template, or planner=True")


@dataclass(slots=True)
class AgentTask:
    """One unit of work for an agent with a given capability.

    ``complexity`` is in 0..1 (hard tasks prefer strong agents). ``timeout_s`` of ``None`` means
    the orchestrator's default. ``resources`` names exclusive resources: two tasks sharing one
    never run at once.
    """

    id: str
    capability: str
    prompt: str = ""
    input: object = None
    priority: int = 0
    depends_on: tuple[str, ...] = ()
    complexity: float = 0.5
    timeout_s: float | None = None
    max_attempts: int = 3
    resources: tuple[str, ...] = ()
    verify: VerifySpec | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    key: str | None = None  # idempotency key: resubmitting a known key returns the known task
    group: str | None = None  # related tasks: they prefer the agent that handled their siblings
    decompose: Decompose | None = None  # expand into a sub-graph before (or instead of) routing
    estimate_s: float | None = None  # expected duration: ranks and routing use it when given
    min_proficiency: float | None = None  # agents declaring less for its capability never take it

    def _scheduling_problems(self) -> list[str]:
        out: list[str] = []
        est = self.estimate_s
        if est is not None and not (est > 0 and math.isfinite(est)):
            out.append(f"estimate_s: must be a positive number of seconds, got {est}")
        if self.min_proficiency is not None and not (0.0 <= self.min_proficiency <= 1.0):
            out.append(f"min_proficiency: must be within 0..1, got {self.min_proficiency}")
        return out

    def problems(self) -> list[str]:
        """Return what is wrong with this task's fields (empty when valid)."""
        out: list[str] = []
        if not isinstance(self.id, str) or not self.id:
            out.append("id: must be a non-empty string")
        if not isinstance(self.capability, str) or not self.capability:
            out.append("capability: must be a non-empty string")
        if not (0.0 <= self.complexity <= 1.0):
            out.append(f"complexity: must be within 0..1, got {self.complexity}")
        if self.timeout_s is not None and not (
            self.timeout_s > 0 and math.isfinite(self.timeout_s)
        ):
            out.append(f"timeout_s: must be a positive number of seconds, got {self.timeout_s}")
        out.extend(self._scheduling_problems())
        if self.max_attempts < 1:
            out.append(f"max_attempts: must be at least 1, got {self.max_attempts}")
        if isinstance(self.depends_on, str):
            out.append("depends_on: must be a list of task ids, not a string")
        if isinstance(self.resources, str):
            out.append("resources: must be a list of names, not a string")
        check = self.verify
        if check is not None:
            if isinstance(check.argv, str) or not check.argv:
                out.append("verify.argv: must be a non-empty list of strings")
            if not (check.timeout_s > 0 and math.isfinite(check.timeout_s)):
                out.append(
                    f"verify.timeout_s: must be a positive number of seconds, got {check.timeout_s}"
                )
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    """What one attempt consumed, as its agent reported it; ``None`` where it did not say."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_json(cls, data: object) -> Usage | None:
        """The usage of ``to_json``'s shape; ``None`` for anything else."""
        if not isinstance(data, dict):
            return None
        i, o, c = data.get("input_tokens"), data.get("output_tokens"), data.get("cost_usd")
        return cls(
            i if isinstance(i, int) else None,
            o if isinstance(o, int) else None,
            float(c) if isinstance(c, int | float) else None,
        )


@dataclass(slots=True)
class Attempt:
    """One try of a task on one agent. Times are seconds since the run started.

    ``log`` is what the agent wrote besides its output (a command's stderr, capped), or None;
    ``usage`` the tokens and cost it reported (coding agents), or None.
    """

    number: int
    agent: str
    agent_instance: str
    started_at: float
    finished_at: float | None = None
    outcome: Outcome | None = None
    error: str | None = None
    log: str | None = None
    usage: Usage | None = None

    @property
    def duration_s(self) -> float:
        return 0.0 if self.finished_at is None else self.finished_at - self.started_at


@dataclass(slots=True)
class TaskResult:
    """The final word on a task: its state, output or error, and every attempt made."""

    task_id: str
    state: TaskState
    output: object = None
    error: str | None = None
    agent: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    capability: str = ""
    ready_at: float | None = None
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.state is TaskState.SUCCEEDED
