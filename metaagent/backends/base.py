"""The interface an execution backend offers, and choosing one by name.

A backend runs attempts and owns the life of agent instances (start-up, heartbeats, stop). The
runtime talks to it only through ``Backend``; backends are named in ``BACKENDS`` and imported
only when chosen, so a backend's heavy dependencies (Ray, say) load only for those who use it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

    from metaagent.agents.base import AttemptContext, Runner
    from metaagent.clock import Clock
    from metaagent.core.health import HealthPolicy
    from metaagent.core.instances import AgentInstance
    from metaagent.core.tasks import AgentTask, Outcome


class AttemptReport(Protocol):
    """Where a backend reports on an attempt: the task's check, and how the attempt ended."""

    async def check(self, task: AgentTask, output: object) -> None:
        """Verify a successful attempt's output; raises ``VerificationFailed`` if it fails."""
        ...

    def ended(
        self, ctx: AttemptContext, outcome: Outcome, output: object, error: str | None
    ) -> None:
        """The attempt ended (called once, unless it was cancelled)."""
        ...


@dataclass(frozen=True, slots=True)
class InstanceHooks:
    """What a backend tells the runtime about agent instances, by instance id."""

    on_ready: Callable[[str], None]  # started and answering: it may take work
    on_lost: Callable[[str, str], None]  # died, hung or grew too large (with the reason)
    on_stopped: Callable[[str], None]  # retired and gone


class Backend(Protocol):
    """How attempts execute and agent instances live.

    ``attempt`` returns the coroutine of one attempt: it runs ``runner`` on ``ctx`` within
    ``limit_s`` seconds (None: no limit), then ``report.check`` (the task's verification) when
    the attempt succeeded and the task has one, and tells ``report.ended`` how it ended, exactly
    once, unless the coroutine is cancelled (then the runtime already recorded the outcome).
    A backend's constructor does no I/O: connecting to a cluster waits for the first spawn.
    """

    name: str

    def attempt(
        self,
        ctx: AttemptContext,
        runner: Runner,
        limit_s: float | None,
        report: AttemptReport,
    ) -> Coroutine[object, object, None]: ...

    def spawn(self, inst: AgentInstance) -> bool:
        """Start an instance; true when it is ready at once (nothing to start)."""
        ...

    def terminate(self, inst: AgentInstance, *, lost: bool) -> None:
        """Stop an instance that was retired, or declared lost and must not linger."""
        ...

    def kill(self, runner: Runner, instance: str, reason: str) -> None:
        """Make sure an instance already gone from the pool has no process left."""
        ...

    async def aclose(self, instances: list[AgentInstance]) -> None:
        """Stop every instance and every background task; return when all are gone."""
        ...


def node_of(backend: Backend, instance: str) -> str | None:
    """Where ``instance`` runs (or ran), on a backend that places instances on the nodes of a
    cluster (it has a ``nodes`` mapping, as the Ray backend); None on one machine."""
    nodes: Mapping[str, str] = getattr(backend, "nodes", {})
    return nodes.get(instance)


def pending_of(backend: Backend) -> dict[str, str]:
    """Per agent spec, why its instances cannot be created now, on a backend that can say so
    (a ``pending`` mapping, as the Ray backend's: no node has the resources asked for)."""
    pending: Mapping[str, str] = getattr(backend, "pending", {})
    return {f"agent {spec}": why for spec, why in pending.items()}


BACKENDS: dict[str, str] = {
    "local": "metaagent.backends.local:LocalBackend",
    "ray": "metaagent.backends.ray.backend:RayBackend",
}
"""Backend name -> ``module:factory``; the module is imported when the backend is chosen."""


ADDRESSED = frozenset({"ray"})
"""Backends that take an ``address`` (where their cluster is)."""


def load_backend(
    name: str,
    health: HealthPolicy,
    clock: Clock,
    workdir: str,
    hooks: InstanceHooks,
    *,
    address: str | None = None,
) -> Backend:
    """Import and create the backend called ``name``. Raises ``WorkflowError`` naming the known
    backends for an unknown name, saying what to install when its module is missing, and for an
    ``address`` given to a backend that has no cluster."""
    target = BACKENDS.get(name)
    if target is None:
        raise WorkflowError(
            f"unknown backend {name!r}; choose one of: {', '.join(sorted(BACKENDS))}",
            where="backend",
        )
    if address is not None and name not in ADDRESSED:
        raise WorkflowError(
            f"backend {name!r} takes no address (only {', '.join(sorted(ADDRESSED))} does)",
            where="ray_address",
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise WorkflowError(
            f"backend {name!r} needs {exc.name!r}: install metaagent[{name}]", where="backend"
        ) from exc
    factory: Callable[..., Backend] = getattr(module, attr)
    if address is None:
        return factory(health, clock, workdir, hooks)
    return factory(health, clock, workdir, hooks, address=address)
