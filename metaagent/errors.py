"""Every error metaagent raises has one root, split by who must act on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class MetaAgentError(Exception):
    """Root of every metaagent error."""


# --- the user's input -------------------------------------------------------------------------


class WorkflowError(MetaAgentError, ValueError):
    """A workflow, task list or agent definition is invalid.

    ``where`` names the place (a file, ``tasks[3].depends_on``, a task id) so the user can fix it.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class CycleError(WorkflowError):
    """The dependency graph has a cycle; ``cycle`` is its path, first node repeated at the end."""

    def __init__(self, cycle: Sequence[str], *, where: str | None = None) -> None:
        self.cycle = tuple(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle), where=where)


class UnknownCapabilityError(WorkflowError):
    """A task asks for a capability that no agent offers."""

    def __init__(self, capability: str, known: Sequence[str], *, where: str | None = None) -> None:
        self.capability = capability
        self.known = tuple(sorted(known))
        listing = ", ".join(self.known) if self.known else "(no agents registered)"
        super().__init__(
            f"unknown capability {capability!r}; known capabilities: {listing}", where=where
        )


# --- the runtime ------------------------------------------------------------------------------


class AgentFailure(MetaAgentError, RuntimeError):
    """An agent attempt failed: the runner raised, a command exited non-zero, or a check failed."""


class AgentCrash(AgentFailure):
    """The agent itself died during the attempt (killed by a signal, lost process)."""


class VerificationFailed(AgentFailure):
    """The task's ``verify`` command rejected the agent's output."""


class TaskTimeout(MetaAgentError, TimeoutError):
    """An attempt ran past its ``timeout_s`` and was stopped."""


class RunFailed(MetaAgentError, RuntimeError):
    """``execute_concurrent`` ran a task that did not succeed; ``result`` tells how it ended."""

    def __init__(self, message: str, *, result: object = None) -> None:
        self.result = result
        super().__init__(message)


# --- the operator -----------------------------------------------------------------------------


class CapacityError(MetaAgentError, RuntimeError):
    """A bounded queue is full; the submission was refused and nothing accepted was dropped."""

    def __init__(self, message: str, *, bound: int) -> None:
        self.bound = bound
        super().__init__(message)


class RunOwned(MetaAgentError, RuntimeError):
    """Another live process executes this run (it holds the run's lease); the run was not
    touched. ``owner`` describes that process (owner id, pid, host); it may be taken over only
    once its lease has expired."""

    def __init__(self, message: str, *, run_id: str, owner: str) -> None:
        self.run_id = run_id
        self.owner = owner
        super().__init__(message)
