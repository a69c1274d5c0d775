"""One spec's share of the pool: its instances and the bookkeeping of its life and limits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.instances import AgentInstance, AgentState
from metaagent.core.rate_limit import RateWindow
from metaagent.core.scaling import Smoothed
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from metaagent.core.specs import AgentSpec


@dataclass(slots=True, eq=False)
class SpecPool:
    """One spec's instances and bookkeeping."""

    spec: AgentSpec
    min_instances: int
    max_instances: int
    instances: dict[str, AgentInstance] = field(default_factory=dict)
    next_n: int = 1
    last_action_at: float = -math.inf
    last_shrink_at: float = -math.inf
    hold_until: float = -math.inf  # no spawn before this: the back-off after a loss
    losses: int = 0  # consecutive losses, for the restart back-off
    respawn_due: int = 0  # restarts scheduled and not yet made
    rate: RateWindow = field(default_factory=RateWindow)  # attempt starts, for rate_per_min
    busy: Smoothed = field(default_factory=Smoothed)  # attempts its instances run

    @property
    def live(self) -> int:
        return sum(1 for i in self.instances.values() if i.state is not AgentState.LOST)

    @property
    def elastic(self) -> bool:
        """True when the scaling policy may grow or shrink this spec."""
        return self.max_instances > self.min_instances

    def in_service(self) -> Iterator[AgentInstance]:
        """The instances the scaling policy counts: not lost, not draining."""
        return (
            i
            for i in self.instances.values()
            if i.state not in (AgentState.LOST, AgentState.DRAINING)
        )


def check_initial(name: str, min_instances: int, asked: int, max_agents: int) -> None:
    """Raise ``WorkflowError`` when the spec ``name``'s ``min_instances``, with the ``asked``
    of the specs added before it, would pass ``max_agents``: the pool would start more
    instances than it may hold."""
    total = asked + min_instances
    if total <= max_agents:
        return
    before = f" ({asked} asked by the agents before it)" if asked else ""
    raise WorkflowError(
        f"min_instances {min_instances}{before} would start {total} instances, more than "
        f"max_agents {max_agents} (instances over all agents): lower min_instances or raise "
        "max_agents",
        where=f"agent {name!r}",
    )
