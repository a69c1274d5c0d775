"""``SchedulerConfig``: the core's limits and policies, units in the names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.health import HealthPolicy
from metaagent.core.retry import RetryPolicy
from metaagent.core.routing.router import RoutingWeights
from metaagent.core.scaling import PoolPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.core.learning import RoutingMode


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Limits and policies of the core. Units are in the names."""

    max_concurrency: int = 64  # attempts running at once, over all agents
    max_queued: int = 10_000  # accepted, unfinished tasks over all runs (backpressure bound)
    max_plan_tasks: int = 1_000  # sub-tasks one decomposition (a plan or a template) may add
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    weights: RoutingWeights = field(default_factory=RoutingWeights)
    routing: RoutingMode = "deterministic"
    seed: int = 0
    learn: bool = True  # False: routing keeps declared proficiencies and never learns
    affinity_margin: float = 0.05  # score a group's previous agent may lose and still be chosen
    aging_interval_s: float = 300.0  # each interval a task has waited counts as +1 priority
    pool: PoolPolicy = field(default_factory=PoolPolicy)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    capability_limits: Mapping[str, int] = field(default_factory=dict)  # running at once
    resource_limits: Mapping[str, int] = field(default_factory=dict)  # holders at once (default 1)
    min_proficiency: Mapping[str, float] = field(default_factory=dict)  # per capability
    lookahead: int = 8  # tasks of one capability passed over per round (4x over all of them)

    def problems(self) -> list[str]:
        out = []
        if self.max_concurrency < 1:
            out.append(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_queued < 1:
            out.append(f"max_queued must be at least 1, got {self.max_queued}")
        if self.max_plan_tasks < 1:
            out.append(f"max_plan_tasks must be at least 1, got {self.max_plan_tasks}")
        if self.aging_interval_s <= 0:
            out.append(f"aging_interval_s must be positive, got {self.aging_interval_s}")
        for name, limits in (
            ("capability", self.capability_limits),
            ("resource", self.resource_limits),
        ):
            out.extend(
                f"{name} limit of {k!r} must be at least 1, got {n}" for k, n in limits.items()
                if n < 1
            )  # fmt: skip
        out.extend(
            f"min_proficiency of {k!r} must be within 0..1, got {v}"
            for k, v in self.min_proficiency.items() if not 0.0 <= v <= 1.0
        )  # fmt: skip
        if self.lookahead < 1:
            out.append(f"lookahead must be at least 1, got {self.lookahead}")
        out.extend(f"routing.{p}" for p in self.weights.problems())
        return out + self.pool.problems()
