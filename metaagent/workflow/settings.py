"""A workflow's ``settings:`` and a caller's overrides (the command line's flags), mapped onto one
``OrchestratorConfig``.

Knob by knob, a given override wins over the workflow's setting, which wins over the config's own
default. Nothing here knows a default: a knob neither layer gives keeps its field's default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from metaagent.runtime.config import OrchestratorConfig

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.core.routing.weights import RoutingWeights
    from metaagent.workflow.build import Workflow
    from metaagent.workflow.schema import RoutingModel, SettingsModel

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Overrides:
    """Knobs set over the workflow's settings (the ``run`` command's flags). Units are in the names.

    ``None``: not given; the workflow's setting, else the config's default, applies.
    """

    max_concurrency: int | None = None
    max_queued: int | None = None
    max_agents: int | None = None
    spawn_threshold: int | None = None
    idle_timeout_s: float | None = None
    target_utilisation: float | None = None
    scale_up_window_s: float | None = None
    utilisation_window_s: float | None = None
    backend: str | None = None
    ray_address: str | None = None


NO_OVERRIDES = Overrides()


def orchestrator_config(
    settings: SettingsModel,
    overrides: Overrides = NO_OVERRIDES,
    *,
    workdir: Path,
    task_count: int,
) -> OrchestratorConfig:
    """The config to run a workflow of ``task_count`` tasks in ``workdir`` (made absolute).

    The layers apply in order: the defaults, then ``settings``, then ``overrides``. The default
    bound on queued tasks grows to ``task_count``, so a workflow's own tasks always fit.
    """
    base = OrchestratorConfig(workdir=str(workdir.resolve()))
    base = replace(base, max_queued=max(base.max_queued, task_count))
    return _with_overrides(_with_settings(base, settings), overrides)


def with_budget(config: OrchestratorConfig, wf: Workflow) -> OrchestratorConfig:
    """``config`` with the workflow's budgets and price table (``settings.budget``/``pricing``
    and the ``budget:`` of its tasks and agents)."""
    return replace(config, budget=wf.budget, pricing=wf.pricing)


def _with_settings(c: OrchestratorConfig, s: SettingsModel) -> OrchestratorConfig:
    return replace(
        c,
        max_concurrency=_given_or(s.max_concurrency, c.max_concurrency),
        max_queued=_given_or(s.max_queued, c.max_queued),
        default_timeout_s=_given_or(s.default_timeout_s, c.default_timeout_s),
        routing=_given_or(s.routing.mode if s.routing else None, c.routing),
        weights=_routing(c.weights, s.routing),
        seed=_given_or(s.seed, c.seed),
        aging_interval_s=_given_or(s.aging_interval_s, c.aging_interval_s),
        backend=_given_or(s.backend, c.backend),
        ray_address=_given_or(s.ray_address, c.ray_address),
        capability_limits={**c.capability_limits, **s.capability_limits},
        resource_limits={**c.resource_limits, **s.resource_limits},
        pool=replace(
            c.pool,
            max_agents=_given_or(s.max_agents, c.pool.max_agents),
            spawn_threshold=_given_or(s.spawn_threshold, c.pool.spawn_threshold),
            idle_timeout_s=_given_or(s.idle_timeout_s, c.pool.idle_timeout_s),
            cooldown_s=_given_or(s.scale_cooldown_s, c.pool.cooldown_s),
            target_utilisation=_given_or(s.target_utilisation, c.pool.target_utilisation),
            scale_up_window_s=_given_or(s.scale_up_window_s, c.pool.scale_up_window_s),
            utilisation_window_s=_given_or(s.utilisation_window_s, c.pool.utilisation_window_s),
        ),
        health=replace(
            c.health,
            heartbeat_interval_s=_given_or(s.heartbeat_interval_s, c.health.heartbeat_interval_s),
            heartbeat_timeout_s=_given_or(s.heartbeat_timeout_s, c.health.heartbeat_timeout_s),
            breaker_failures=_given_or(s.breaker_failures, c.health.breaker_failures),
        ),
    )


def _routing(w: RoutingWeights, r: RoutingModel | None) -> RoutingWeights:
    """The weights with ``settings.routing``'s objective, quality target and cost weight."""
    if r is None:
        return w
    return replace(
        w,
        objective=_given_or(r.objective, w.objective),
        quality_target=_given_or(r.quality_target, w.quality_target),
        cost=_given_or(r.cost_weight, w.cost),
    )


def _with_overrides(c: OrchestratorConfig, o: Overrides) -> OrchestratorConfig:
    return replace(
        c,
        max_concurrency=_given_or(o.max_concurrency, c.max_concurrency),
        max_queued=_given_or(o.max_queued, c.max_queued),
        backend=_given_or(o.backend, c.backend),
        ray_address=_given_or(o.ray_address, c.ray_address),
        pool=replace(
            c.pool,
            max_agents=_given_or(o.max_agents, c.pool.max_agents),
            spawn_threshold=_given_or(o.spawn_threshold, c.pool.spawn_threshold),
            idle_timeout_s=_given_or(o.idle_timeout_s, c.pool.idle_timeout_s),
            target_utilisation=_given_or(o.target_utilisation, c.pool.target_utilisation),
            scale_up_window_s=_given_or(o.scale_up_window_s, c.pool.scale_up_window_s),
            utilisation_window_s=_given_or(o.utilisation_window_s, c.pool.utilisation_window_s),
        ),
    )


def _given_or(value: _T | None, current: _T) -> _T:
    """``value`` if the layer gives it (``None``: it does not; 0 and ``False`` are given)."""
    return current if value is None else value
