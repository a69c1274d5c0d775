"""``AgentSpec``: a kind of agent, what it can do and how it runs (its runner)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.agents.base import Runner
    from metaagent.core.placement import Placement


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """A kind of agent: what it can do (``{capability: proficiency 0..1}``) and how it runs.

    ``concurrency`` is the number of tasks one instance runs at once (its slots).
    """

    name: str
    capabilities: Mapping[str, float]
    runner: Runner
    role: str | None = None
    concurrency: int = 1
    description: str = ""
    min_instances: int = 1
    max_instances: int = 1
    rate_per_min: float | None = None  # attempts started per minute over all its instances
    placement: Placement | None = None  # where a cluster backend (ray) places its instances
    cost_per_call_usd: float | None = None  # declared cost of an attempt (routing's price)

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.name:
            out.append("name: must be a non-empty string")
        if not self.capabilities:
            out.append("capabilities: at least one capability is required")
        for cap, prof in self.capabilities.items():
            if not (0.0 <= prof <= 1.0):
                out.append(f"capabilities.{cap}: proficiency must be within 0..1, got {prof}")
        if self.concurrency < 1:
            out.append(f"concurrency: must be at least 1, got {self.concurrency}")
        if not 0 <= self.min_instances <= self.max_instances or self.max_instances < 1:
            out.append(
                f"min_instances/max_instances: need 0 <= min ({self.min_instances}) <= max "
                f"({self.max_instances}) and max >= 1"
            )
        if self.rate_per_min is not None and self.rate_per_min <= 0:
            out.append(f"rate_per_min: must be positive, got {self.rate_per_min}")
        c = self.cost_per_call_usd
        if c is not None and not (math.isfinite(c) and c >= 0):
            out.append(f"cost_per_call_usd: must be a finite number of USD >= 0, got {c}")
        if self.placement is not None:
            out.extend(self.placement.problems())
        return out
