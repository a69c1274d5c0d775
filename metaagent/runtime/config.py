"""``OrchestratorConfig``: how an orchestrator runs, every setting with a default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.pool import HealthPolicy
from metaagent.core.retry import RetryPolicy
from metaagent.core.routing import RoutingWeights
from metaagent.core.scaling import PoolPolicy
from metaagent.core.scheduler.config import SchedulerConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.core.learning import RoutingMode


@dataclass(frozen=True, slots=True)
class OrchestratorConfig:
    """How an orchestrator runs. Units are in the names; every field has a default."""

    max_concurrency: int = 16
    max_queued: int = 10_000
    default_timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    routing: RoutingMode = "deterministic"
    weights: RoutingWeights = field(default_factory=RoutingWeights)
    seed: int = 0
    workdir: str = "."
    pool: PoolPolicy = field(default_factory=PoolPolicy)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    capability_limits: Mapping[str, int] = field(default_factory=dict)
    resource_limits: Mapping[str, int] = field(default_factory=dict)
    aging_interval_s: float = 300.0

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig(
            max_concurrency=self.max_concurrency,
            max_queued=self.max_queued,
            retry=self.retry,
            weights=self.weights,
            routing=self.routing,
            seed=self.seed,
            pool=self.pool,
            health=self.health,
            capability_limits=self.capability_limits,
            resource_limits=self.resource_limits,
            aging_interval_s=self.aging_interval_s,
        )
