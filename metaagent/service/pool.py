"""The service's orchestrator: one for every run it serves, so workflows add their agents to
a live pool. A workflow may name an agent the pool already has only with the same definition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.decisions import SpawnAgent
from metaagent.errors import WorkflowError
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.workflow.identity import batch_key

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.specs import AgentSpec

__all__ = ["ServiceOrchestrator", "agent_key"]


def agent_key(spec: AgentSpec) -> str:
    """The identity of an agent's whole definition (capabilities, slots, runner settings)."""
    return batch_key("", [], "", [spec])


class ServiceOrchestrator(Orchestrator):
    """An ``Orchestrator`` whose pool grows with the workflows submitted to it, and which
    tells ``on_commit`` how long each journal commit took (seconds)."""

    @property
    def on_commit(self) -> Callable[[float], None] | None:
        return self._committer.on_commit

    @on_commit.setter
    def on_commit(self, observe: Callable[[float], None] | None) -> None:
        self._committer.on_commit = observe

    def check_agents(self, specs: Sequence[AgentSpec]) -> list[AgentSpec]:
        """The specs of ``specs`` the pool lacks; ``WorkflowError`` naming an agent the pool
        has with another definition."""
        have = self.scheduler.pool.specs
        new: list[AgentSpec] = []
        for spec in specs:
            known = have.get(spec.name)
            if known is None:
                new.append(spec)
            elif agent_key(known.spec) != agent_key(spec):
                raise WorkflowError(
                    f"agent {spec.name!r} is defined differently by a workflow this server "
                    "already runs; give it another name or the same definition",
                    where=f"agent {spec.name!r}",
                )
        return new

    def add_agents(self, specs: Sequence[AgentSpec]) -> None:
        """Add the specs the pool lacks (see ``check_agents``); their ``min_instances`` start
        now, or with the first run."""
        now = self.clock.now()
        for spec in self.check_agents(specs):
            spawns = self.scheduler.add_spec(spec, now)
            if self._agents_started:
                self._apply(spawns)
            else:
                self._spawns.extend(d for d in spawns if isinstance(d, SpawnAgent))
        if self._agents_started:
            self._schedule_dispatch()

    def executes(self, run_id: str) -> bool:
        """Whether this orchestrator executes ``run_id`` now (it is open here)."""
        handle = self._handles.get(run_id)
        return handle is not None and not handle.done()
