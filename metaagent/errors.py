"""Every error metaagent raises has one root, split by who must act on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


MAX_LISTED = 20
"""How many items an error message lists before it says how many more there are."""


def capped(items: Sequence[str], sep: str = "; ", *, limit: int = MAX_LISTED) -> str:
    """``items`` joined by ``sep``, cut after ``limit`` with ``... and N more``."""
    shown = sep.join(items[:limit])
    return f"{shown}{sep}... and {len(items) - limit} more" if len(items) > limit else shown


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a user's string named in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """The dependency graph has a cycle; ``cycle`` is its path, first node repeated at the end.

    The message names at most ``MAX_LISTED`` of its tasks (``cycle`` holds them all).
    """

    def __init__(self, cycle: Sequence[str], *, where: str | None = None) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join(self.cycle)
        if len(self.cycle) > MAX_LISTED + 1:
            tasks = len(self.cycle) - 1
            path = " -> ".join(self.cycle[:MAX_LISTED]) + f" -> ... ({tasks} tasks)"
        super().__init__("dependency cycle: " + path, where=where)


class UnknownCapabilityError(WorkflowError):
    """A task asks for a capability that no agent offers."""

    def __init__(self, capability: str, known: Sequence[str], *, where: str | None = None) -> None:
        self.capability = capability
        self.known = tuple(sorted(known))
        listing = capped(self.known, ", ") if self.known else "(no agents registered)"
        super().__init__(
            f"unknown capability {brief(capability)}; known capabilities: {listing}", where=where
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


class BackendUnavailable(MetaAgentError, RuntimeError):
    """The execution backend cannot be used: its cluster cannot be reached, or it has no node
    that can hold an agent's instances. Raised when the run starts, saying what to do."""


class RunOwned(MetaAgentError, RuntimeError):
    """Another live process executes this run (it holds the run's lease); the run was not
    touched. ``owner`` describes that process (owner id, pid, host); it may be taken over only
    once its lease has expired."""

    def __init__(self, message: str, *, run_id: str, owner: str) -> None:
        self.run_id = run_id
        self.owner = owner
        super().__init__(message)
