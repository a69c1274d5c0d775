"""``OrchestratorConfig``: how an orchestrator runs, every setting with a default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.budget import BudgetPlan
from metaagent.core.health import HealthPolicy
from metaagent.core.retry import RetryPolicy
from metaagent.core.routing.router import RoutingWeights
from metaagent.core.scaling import PoolPolicy
from metaagent.core.scheduler.config import SchedulerConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.core.budget import Price
    from metaagent.core.learning import RoutingMode

# The core's defaults, which the runtime keeps where it does not set its own: each default is
# written once, in the layer that owns the knob.
_CORE = SchedulerConfig()


@dataclass(frozen=True, slots=True)
class OrchestratorConfig:
    """How an orchestrator runs. Units are in the names; every field has a default.

    The scheduling knobs are the core's (``SchedulerConfig``, ``PoolPolicy``, ``HealthPolicy``,
    ``RetryPolicy``); this layer adds the task timeout, the agents' working directory and the
    backend that runs the attempts.
    """

    max_concurrency: int = 16  # attempts running at once, over all agents
    max_queued: int = _CORE.max_queued  # accepted, unfinished tasks over all runs
    # For a task without its own ``timeout_s`` (which wins): an hour, so a hung function or
    # command agent cannot hold a slot for ever. ``None``, set explicitly: no limit.
    default_timeout_s: float | None = 3600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    routing: RoutingMode = _CORE.routing
    weights: RoutingWeights = field(default_factory=RoutingWeights)
    seed: int = _CORE.seed
    workdir: str = "."  # the directory the agents work in
    backend: str = "local"  # how attempts execute (``metaagent.backends.base.BACKENDS``)
    # A journal that writes a file is written on a thread of its own, so that a slow or locked
    # file delays commits, never the loop (``runtime.committer``). False: on the loop.
    journal_thread: bool = True
    ray_address: str | None = None  # backend ray: ``auto``, ``HOST:PORT``, None (see docs/ray.md)
    pool: PoolPolicy = field(default_factory=PoolPolicy)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    capability_limits: Mapping[str, int] = field(default_factory=dict)  # running at once
    resource_limits: Mapping[str, int] = field(default_factory=dict)  # holders at once
    aging_interval_s: float = _CORE.aging_interval_s  # each interval waited: +1 priority
    # Spend caps of each run, its tasks and agents (docs/workflows.md#budgets); model prices
    # per million tokens for usage without its own cost (None: the shipped pricing.yaml).
    budget: BudgetPlan = field(default_factory=BudgetPlan)
    pricing: Mapping[str, Price] | None = None

    def scheduler_config(self) -> SchedulerConfig:
        """The core's part of this config; the knobs this layer does not set keep its defaults."""
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
