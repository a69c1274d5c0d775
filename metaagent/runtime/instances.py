"""Carrying out the pool's decisions on the backend: spawning and stopping agent instances."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.decisions import SpawnAgent, TerminateAgent

if TYPE_CHECKING:
    from metaagent.backends.base import Backend
    from metaagent.core.decisions import Decision
    from metaagent.core.scheduler.scheduler import Scheduler


def carry_out(d: Decision, backend: Backend, scheduler: Scheduler) -> None:
    """Start or stop the instance a pool decision names; other decisions need nothing here.

    An instance the backend has ready at once (nothing to start) is reported ready now.
    """
    if isinstance(d, SpawnAgent):
        inst = scheduler.agents.get(d.instance)
        if inst is not None and backend.spawn(inst):
            scheduler.agent_ready(d.instance, d.at)
    elif isinstance(d, TerminateAgent):
        inst = scheduler.agents.get(d.instance)
        if inst is not None:
            backend.terminate(inst, lost=d.lost)
        elif d.lost:  # already gone from the pool: make sure its process is gone too
            pool = scheduler.pool.specs.get(d.spec)
            if pool is not None:
                backend.kill(pool.spec.runner, d.instance, d.reason)
