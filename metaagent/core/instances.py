"""Agent instances: one live agent of a spec, with its slots, its state and its counters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metaagent.core.specs import AgentSpec


class AgentState(StrEnum):
    """An agent instance's life: only ``ready`` instances take work."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"  # finishing its work before it is terminated
    QUARANTINED = "quarantined"  # circuit breaker open
    THROTTLED = "throttled"  # its spec's rate limit is spent for now
    LOST = "lost"
    STOPPED = "stopped"


@dataclass(slots=True, eq=False)
class AgentInstance:
    """One live agent with ``slots`` task slots, of kind ``spec``."""

    id: str
    spec: AgentSpec
    slots: int
    running: int = 0
    state: AgentState = AgentState.READY
    started_at: float = 0.0
    idle_since: float = 0.0
    busy_s: float = 0.0
    tasks_done: int = 0
    consecutive_failures: int = 0
    breaker_trips: int = 0
    probing: bool = False  # half-open breaker: one slot until an attempt succeeds
    ready_at: float | None = None  # when it began to take work
    stopped_at: float | None = None  # when it was lost or retired

    @property
    def free(self) -> int:
        return max(0, self.slots - self.running) if self.state is AgentState.READY else 0
