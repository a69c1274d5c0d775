"""Simulation files: YAML naming an agent pool, a workload and the profiles of the agents.

Loading checks everything before anything is simulated; every error names the file and the
field. The format is documented in ``docs/simulator.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from metaagent.core.graph import TaskGraph
from metaagent.core.routing.weights import RoutingWeights
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask
from metaagent.errors import UnknownCapabilityError, WorkflowError, brief, capped
from metaagent.sim.spec import (
    SIMULATED,
    AgentPool,
    Duration,
    Profile,
    SimSettings,
    SimSpec,
)
from metaagent.sim.workload import Workload
from metaagent.workflow.reader import describe_errors, read_yaml
from metaagent.workflow.roles import AgentEntry, check_unique, merge_role, resolve_catalog
from metaagent.workflow.schema import RoutingModel

if TYPE_CHECKING:
    from metaagent.catalog import Catalog

_STRICT = ConfigDict(extra="forbid")
Share = Annotated[float, Field(ge=0.0, le=1.0)]
ProfileKey = tuple[str | None, str | None]  # (agent, capability); None: any


class DurationModel(BaseModel):
    model_config = _STRICT

    dist: Literal["fixed", "lognormal", "exponential", "uniform"] = "lognormal"
    mean_s: float = Field(gt=0, allow_inf_nan=False)
    cv: float = Field(default=0.5, ge=0, allow_inf_nan=False)


class ProfileModel(BaseModel):
    model_config = _STRICT

    agent: str | None = None
    capability: str | None = None
    duration: DurationModel | None = None
    failure_rate: Share | None = None
    failure_growth: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    failure_from: Share | None = None
    cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class DefaultProfileModel(BaseModel):
    model_config = _STRICT

    duration: DurationModel = Field(default_factory=lambda: DurationModel(mean_s=1.0))
    failure_rate: Share = 0.0
    failure_growth: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    failure_from: Share = 0.0
    cost_usd: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class AgentModel(BaseModel):
    model_config = _STRICT

    name: str | None = Field(default=None, min_length=1)
    role: str | None = Field(default=None, min_length=1)
    capabilities: dict[str, Share] | None = None
    concurrency: int | None = Field(default=None, ge=1)
    count: int = Field(default=1, ge=1)
    cost_per_call_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class TaskModel(BaseModel):
    model_config = _STRICT

    id: str = Field(min_length=1)
    capability: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    priority: int = 0
    complexity: Share = 0.5
    timeout_s: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    resources: list[str] = Field(default_factory=list)
    group: str | None = None
    duration_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # what it takes
    estimate_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # what is told


class GenerateModel(BaseModel):
    model_config = _STRICT

    count: int = Field(ge=1)
    capabilities: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    layers: int = Field(default=1, ge=1)
    max_parents: int = Field(default=2, ge=1)
    complexity: Share | tuple[Share, Share] = 0.5
    priorities: dict[int, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    group_size: int | None = Field(default=None, ge=1)
    arrival_rate_per_s: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    seed: int | None = None


class SettingsModel(BaseModel):
    model_config = _STRICT

    routing: RoutingModel | None = None  # a mode, or {mode, objective, quality_target, ...}
    learn: bool = True
    max_concurrency: int | None = Field(default=None, ge=1)
    max_queued: int | None = Field(default=None, ge=1)
    affinity_margin: float = Field(default=0.05, ge=0)
    retry_base_s: float = Field(default=0.25, ge=0)
    retry_max_s: float = Field(default=30.0, ge=0)

    @field_validator("routing", mode="before")
    @classmethod
    def _routing_mode(cls, value: object) -> object:
        """``routing: thompson`` is short for ``routing: {mode: thompson}``."""
        return {"mode": value} if isinstance(value, str) else value


class SimFileModel(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = 0
    catalog: str | None = None
    settings: SettingsModel = Field(default_factory=SettingsModel)
    agents: list[AgentModel] = Field(min_length=1)
    default_profile: DefaultProfileModel = Field(default_factory=DefaultProfileModel)
    profiles: list[ProfileModel] = Field(default_factory=list)
    tasks: list[TaskModel] | None = None
    generate: GenerateModel | None = None
    scale_by_complexity: bool = True
    ordering: Literal["scheduler", "fifo", "priority", "critical_path"] = "scheduler"
    warm_start: int = Field(default=0, ge=0)


def load_simulation(path: str | Path) -> SimSpec:
    """Read and validate a simulation file. Raises ``WorkflowError`` naming file and field."""
    file = Path(path)
    raw = read_yaml(file, "simulation")
    return parse_simulation(raw, source=str(file), base_dir=file.resolve().parent)


def parse_simulation(raw: object, *, source: str = "<simulation>", base_dir: Path) -> SimSpec:
    """Validate a simulation already parsed into Python data (from YAML or JSON)."""
    m = _validate(raw, source)
    pools = _pools(m, source, base_dir)
    known = sorted({c for p in pools for c in p.spec.capabilities})
    names = {p.spec.name for p in pools}
    default, profiles = profiles_of(m.default_profile, m.profiles, names, known, source)
    if (m.tasks is None) == (m.generate is None):
        raise WorkflowError("give exactly one of `tasks:` (a list) or `generate:`", where=source)
    tasks: tuple[AgentTask, ...] = ()
    workload: Workload | None = None
    durations: dict[str, float] = {}
    if m.tasks is not None:
        tasks, durations = _tasks(m.tasks, known, source)
    else:
        assert m.generate is not None
        workload = _workload(m.generate, known, source)
    return SimSpec(
        pools=pools,
        tasks=tasks,
        workload=workload,
        profiles=profiles,
        default=default,
        settings=_settings(m.settings),
        seed=m.seed,
        name=m.name,
        durations=durations,
        scale_by_complexity=m.scale_by_complexity,
        ordering=m.ordering,
        warm_start=m.warm_start,
    )


def profiles_of(
    default_model: DefaultProfileModel,
    models: list[ProfileModel],
    names: set[str],
    known: list[str],
    source: str,
) -> tuple[Profile, dict[ProfileKey, Profile]]:
    """The default profile and the profiles by (agent, capability) of a file's sections."""
    d = default_model
    default = Profile(
        _duration(d.duration), d.failure_rate, d.failure_growth, d.failure_from, d.cost_usd
    )
    return default, _profiles(models, names, known, default, source)


def _validate(raw: object, source: str) -> SimFileModel:
    if not isinstance(raw, dict):
        raise WorkflowError("the top level must be a mapping with name and agents", where=source)
    try:
        return SimFileModel.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(describe_errors(exc, raw), where=source) from exc


def _settings(s: SettingsModel) -> SimSettings:
    r = s.routing
    weights = None
    if r is not None and (r.objective, r.quality_target, r.cost_weight) != (None, None, None):
        w = RoutingWeights()
        weights = RoutingWeights(
            objective=r.objective or w.objective,
            quality_target=w.quality_target if r.quality_target is None else r.quality_target,
            cost=w.cost if r.cost_weight is None else r.cost_weight,
        )
    return SimSettings(
        routing=(r.mode if r is not None else None) or "deterministic",
        weights=weights,
        learn=s.learn,
        max_concurrency=s.max_concurrency,
        max_queued=s.max_queued,
        affinity_margin=s.affinity_margin,
        retry_base_s=s.retry_base_s,
        retry_max_s=s.retry_max_s,
    )


def _profiles(
    models: list[ProfileModel], names: set[str], known: list[str], default: Profile, source: str
) -> dict[ProfileKey, Profile]:
    profiles: dict[ProfileKey, Profile] = {}
    for i, pm in enumerate(models):
        where = f"{source}: profiles[{i}]"
        _check_profile(pm, names, known, where)
        key = (pm.agent, pm.capability)
        if key in profiles:
            raise WorkflowError(
                "a profile for this agent and capability is given twice", where=where
            )
        # A field left out is taken from the next less specific profile.
        base = _fallback(profiles, pm.agent, pm.capability, default)
        profiles[key] = Profile(
            _duration(pm.duration) if pm.duration is not None else base.duration,
            _or(pm.failure_rate, base.failure_rate),
            _or(pm.failure_growth, base.failure_growth),
            _or(pm.failure_from, base.failure_from),
            _or(pm.cost_usd, base.cost_usd),
        )
    return profiles


def _or(value: float | None, base: float) -> float:
    return base if value is None else value


def _check_profile(pm: ProfileModel, names: set[str], known: list[str], where: str) -> None:
    if pm.agent is not None and pm.agent not in names:
        raise WorkflowError(
            f"unknown agent {brief(pm.agent)}; agents: {capped(sorted(names), ', ')}",
            where=f"{where}.agent",
        )
    if pm.capability is not None and pm.capability not in known:
        raise UnknownCapabilityError(pm.capability, known, where=f"{where}.capability")


def _fallback(
    profiles: dict[ProfileKey, Profile],
    agent: str | None,
    capability: str | None,
    default: Profile,
) -> Profile:
    if agent is not None and capability is not None:
        return profiles.get((agent, None)) or profiles.get((None, capability)) or default
    return default


def _duration(d: DurationModel) -> Duration:
    return Duration(d.dist, d.mean_s, d.cv)


def _pools(m: SimFileModel, source: str, base_dir: Path) -> tuple[AgentPool, ...]:
    # `catalog: default` names the default catalog (a workflow file has no such alias)
    ref = None if m.catalog == "default" else m.catalog
    needed = m.catalog is not None or any(a.role is not None for a in m.agents)
    catalog = resolve_catalog(ref, base_dir, needed=needed)
    pools: list[AgentPool] = []
    seen: set[str] = set()
    for i, a in enumerate(m.agents):
        where = f"{source}: agents[{i}]"
        for entry in _entries(a, catalog, where):
            check_unique(entry.name, seen, where=where)
            agent = merge_role(entry, catalog, where=where)
            spec = AgentSpec(
                agent.name, agent.capabilities, SIMULATED, role=agent.role,
                concurrency=agent.concurrency, description=agent.description,
                cost_per_call_usd=a.cost_per_call_usd,
            )  # fmt: skip
            pools.append(AgentPool(spec, a.count))
    return tuple(pools)


def _entries(a: AgentModel, catalog: Catalog | None, where: str) -> list[AgentEntry]:
    """The agents one entry stands for: itself, or with role '*', one per catalog role."""
    if a.role == "*":
        assert catalog is not None
        if a.name is not None or a.capabilities is not None:
            raise WorkflowError("role '*' (every catalog role) takes only count", where=where)
        return [AgentEntry(r.role, r.role, None, a.concurrency) for r in catalog.roles.values()]
    if a.name is None and a.role is None:
        raise WorkflowError("give a name, a role, or both", where=where)
    return [AgentEntry(a.name or a.role or "", a.role, a.capabilities, a.concurrency)]


def _tasks(
    models: list[TaskModel], known: list[str], source: str
) -> tuple[tuple[AgentTask, ...], dict[str, float]]:
    tasks = tuple(
        AgentTask(
            t.id, t.capability, priority=t.priority, depends_on=tuple(t.depends_on),
            complexity=t.complexity, timeout_s=t.timeout_s, max_attempts=t.max_attempts,
            resources=tuple(t.resources), group=t.group, estimate_s=t.estimate_s,
        )
        for t in models
    )  # fmt: skip
    if not tasks:
        raise WorkflowError("tasks: at least one task is required", where=source)
    TaskGraph(tasks, where=source)  # duplicate ids, unknown dependencies, cycles
    for i, t in enumerate(tasks):
        if t.capability not in known:
            raise UnknownCapabilityError(
                t.capability, known, where=f"{source}: tasks[{i}] (id {t.id!r}).capability"
            )
    durations = {t.id: t.duration_s for t in models if t.duration_s is not None}
    return tasks, durations


def _workload(g: GenerateModel, known: list[str], source: str) -> Workload:
    for cap in g.capabilities:
        if cap not in known:
            raise UnknownCapabilityError(cap, known, where=f"{source}: generate.capabilities")
    lo, hi = g.complexity if isinstance(g.complexity, tuple) else (g.complexity, g.complexity)
    w = Workload(
        count=g.count, capabilities=dict(g.capabilities), layers=g.layers,
        max_parents=g.max_parents, complexity=(lo, hi), priorities=dict(g.priorities),
        group_size=g.group_size, arrival_rate_per_s=g.arrival_rate_per_s,
        max_attempts=g.max_attempts, timeout_s=g.timeout_s, seed=g.seed,
    )  # fmt: skip
    problems = w.problems()
    if problems:
        raise WorkflowError("; ".join(f"generate.{p}" for p in problems), where=source)
    return w
