"""The runner protocol: what the runtime asks of every kind of agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.core.tasks import AgentTask, Usage


@dataclass(slots=True)
class AttemptContext:
    """Everything an agent gets for one attempt of one task.

    ``upstream`` maps each dependency's id to its output. ``workdir`` is the directory the run
    works in. ``feedback`` lists what was wrong with the previous attempt's output, when a
    check rejected it (a planner's invalid plan, say). Read-only by convention, but for
    ``log``: a runner sets it to what the agent wrote besides its output (a command's stderr,
    capped), also when the attempt fails, and the runtime keeps it on the attempt's record; so
    for ``usage``, the tokens and cost the agent reported (coding agents). A
    plain slotted dataclass because one is built per attempt on the hot path.
    """

    task: AgentTask
    run_id: str
    attempt: int
    agent: str
    instance: str
    upstream: Mapping[str, object] = field(default_factory=dict)
    workdir: str = "."
    feedback: tuple[str, ...] = ()
    log: str | None = None
    usage: Usage | None = None

    @property
    def prompt(self) -> str:
        return self.task.prompt

    @property
    def input(self) -> object:
        return self.task.input

    def to_json(self) -> dict[str, object]:
        """The attempt as JSON, as command agents receive it on stdin."""
        t = self.task
        return {
            "id": t.id,
            "run_id": self.run_id,
            "capability": t.capability,
            "prompt": t.prompt,
            "input": t.input,
            "priority": t.priority,
            "complexity": t.complexity,
            "metadata": t.metadata,
            "attempt": self.attempt,
            "agent": self.agent,
            "upstream": dict(self.upstream),
            "workdir": self.workdir,
            "feedback": list(self.feedback),
        }


@runtime_checkable
class Runner(Protocol):
    """Runs one attempt and returns its output, or raises.

    Raise ``AgentFailure`` for an error, ``AgentCrash`` when the agent died. The runtime enforces
    timeouts by cancelling the call; a runner must stop its work (kill its processes) when
    cancelled.
    """

    kind: str

    async def run(self, ctx: AttemptContext) -> object: ...

    def describe(self) -> dict[str, object]:
        """A JSON-able description, for listings and reports."""
        ...
