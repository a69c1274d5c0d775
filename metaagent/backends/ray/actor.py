"""One agent instance as it lives inside a Ray actor, on whichever node the cluster placed it.

The class is plain Python; ``backend.py`` makes it a Ray actor class (``ray.remote``) when the
Ray backend is chosen, so this module imports no Ray. Inside the actor the attempts run exactly
as on the local backend (a ``LocalBackend`` of the actor's own, with its time limits, thread
pools, process groups and output caps), so a command agent's process runs on the actor's node
and a long-lived runner's process is supervised there. The task's ``verify`` check is not run
here: the orchestrator runs it where the workflow lives.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

from metaagent.backends.base import InstanceHooks
from metaagent.backends.local import LocalBackend
from metaagent.clock import SystemClock
from metaagent.core.instances import AgentInstance
from metaagent.core.tasks import Outcome

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext
    from metaagent.core.health import HealthPolicy
    from metaagent.core.specs import AgentSpec
    from metaagent.core.tasks import AgentTask

AttemptAnswer = tuple[str, object, str | None, str | None]
"""What an attempt sends back: (outcome value, output, error, the runner's log)."""


class _Capture:
    """The in-actor ``AttemptReport``: keeps how the attempt ended; checks nothing."""

    __slots__ = ("error", "outcome", "output")

    def __init__(self) -> None:
        self.outcome = Outcome.ERROR
        self.output: object = None
        self.error: str | None = "the attempt ended without a report"

    async def check(self, task: AgentTask, output: object) -> None:
        return None  # verification runs in the orchestrator

    def ended(
        self, ctx: AttemptContext, outcome: Outcome, output: object, error: str | None
    ) -> None:
        self.outcome, self.output, self.error = outcome, output, error


class InstanceActor:
    """One instance of ``spec``: ``start`` once, then ``run`` per attempt, ``ping`` for
    heartbeats (an answer of None is healthy, a text is why the instance is lost), ``stop``
    to retire it. ``owner`` says which orchestrator process made it (for reaping leftovers)."""

    def __init__(
        self,
        spec: AgentSpec,
        instance: str,
        workdir: str,
        health: HealthPolicy,
        owner: dict[str, object],
    ) -> None:
        self._spec = spec
        self._iid = instance
        self._workdir = workdir
        self._health = health
        self._owner = owner
        self._backend: LocalBackend | None = None
        self._inst: AgentInstance | None = None
        self._lost: str | None = None
        self._ready: asyncio.Event | None = None
        self._gone = asyncio.Event()  # set with ``_lost``

    def owner(self) -> dict[str, object]:
        return self._owner

    async def start(self) -> dict[str, object]:
        """Start the instance's runner here; answer where it runs, or why it could not start."""
        ready = self._ready = asyncio.Event()
        hooks = InstanceHooks(lambda _: ready.set(), self._on_lost, lambda _: None)
        backend = self._backend = LocalBackend(self._health, SystemClock(), self._workdir, hooks)
        spec = self._spec
        inst = self._inst = AgentInstance(self._iid, spec, spec.concurrency)
        if backend.spawn(inst):
            ready.set()
        lost = asyncio.ensure_future(self._gone.wait())
        waiting = asyncio.ensure_future(ready.wait())
        await asyncio.wait([waiting, lost], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        lost.cancel()
        node, ip = _node()
        return {"node": node, "ip": ip, "spec": spec.name, "host": socket.gethostname(),
                "pid": os.getpid(), "lost": self._lost}  # fmt: skip

    def _on_lost(self, _iid: str, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            self._gone.set()

    async def ping(self) -> str | None:
        return self._lost

    async def run(self, ctx: AttemptContext, limit_s: float | None) -> AttemptAnswer:
        backend = self._backend
        if backend is None:
            return Outcome.CRASH.value, None, "the instance was not started", None
        cap = _Capture()
        await backend.attempt(ctx, self._spec.runner, limit_s, cap)
        return cap.outcome.value, cap.output, cap.error, ctx.log

    async def stop(self) -> None:
        """Stop the runner (a long-lived process is closed) and the thread pools."""
        backend, inst = self._backend, self._inst
        self._backend = None
        if backend is not None and inst is not None:
            await backend.aclose([inst])


def _node() -> tuple[str, str]:
    """This worker's node: its id and IP address."""
    import ray  # in the actor's worker, where Ray is loaded already

    return str(ray.get_runtime_context().get_node_id()), str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
