"""The workflow file format as pydantic models: what ``parse_workflow`` validates a file against.

Strict: a field the format does not know is an error. A runner's fields are those of its kind
in ``metaagent.agents.registry``. Durations are above 0 (or at least 0 for windows) and at most a
year (``MAX_SECONDS``); a string that reaches a process (an id, a prompt, a ``verify`` argument)
holds no NUL.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from metaagent.agents.registry import MAX_SECONDS, NulFree, RunnerConfig

__all__ = [
    "AgentModel",
    "BudgetModel",
    "DecomposeModel",
    "PriceModel",
    "RayPlacementModel",
    "RoutingModel",
    "SandboxModel",
    "SettingsModel",
    "TaskModel",
    "VerifyModel",
    "WorkflowModel",
    "WorkspaceModel",
]

_STRICT = ConfigDict(extra="forbid")


class BudgetModel(BaseModel):
    """A ``budget:`` (of the run in ``settings``, of a task, of an agent): a cap on money and
    tokens (input plus output) spent; at least one of them."""

    model_config = _STRICT

    usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> BudgetModel:
        if self.usd is None and self.tokens is None:
            raise ValueError("a budget needs usd, tokens or both")
        return self


class PriceModel(BaseModel):
    """One model's price in ``settings: {pricing: ...}``, US dollars per million tokens."""

    model_config = _STRICT

    input_per_mtok_usd: float = Field(ge=0, allow_inf_nan=False)
    output_per_mtok_usd: float = Field(ge=0, allow_inf_nan=False)


class RayPlacementModel(BaseModel):
    """An agent's ``ray:`` block: what each of its instances reserves on a Ray node."""

    model_config = _STRICT

    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float | None = Field(default=None, ge=0)
    memory_mb: float | None = Field(default=None, gt=0)
    resources: dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )
    runtime_env: dict[str, object] | None = None


class SandboxModel(BaseModel):
    """An agent's sandbox (``metaagent.sandbox``): checked at load, never silently skipped."""

    model_config = _STRICT

    type: Literal["none", "bwrap", "docker"]
    network: bool = False
    memory_mb: int | None = Field(default=None, ge=16)
    pids: int | None = Field(default=None, ge=2)
    image: NulFree | None = None  # docker
    writable: list[NulFree] = Field(default_factory=list)


class WorkspaceModel(BaseModel):
    """The git repository coding agents work in (``metaagent.workspace``)."""

    model_config = _STRICT

    repo: NulFree = Field(min_length=1)  # relative to the workflow file
    base: NulFree = Field(default="HEAD", min_length=1)
    keep_worktrees: bool = False  # keep failed attempts' worktrees (also --keep-worktrees)


class AgentModel(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    role: str | None = None
    description: str = ""
    capabilities: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] | None = None
    concurrency: int | None = Field(default=None, ge=1)
    min_instances: int = Field(default=1, ge=0)
    max_instances: int | None = Field(default=None, ge=1)
    rate_per_min: float | None = Field(default=None, gt=0)
    # what one attempt costs, for routing's price until attempts report their own cost
    cost_per_call_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    runner: RunnerConfig
    ray: RayPlacementModel | None = None  # placement on the Ray backend (others ignore it)
    sandbox: SandboxModel | None = None
    budget: BudgetModel | None = None  # over this agent's attempts in a run


class VerifyModel(BaseModel):
    model_config = _STRICT

    argv: list[NulFree] = Field(min_length=1)
    timeout_s: float = Field(default=120.0, gt=0, le=MAX_SECONDS)


class DecomposeModel(BaseModel):
    model_config = _STRICT

    template: str | None = None  # a name in the workflow's `templates`
    planner: bool = False  # the task's agent returns the plan as JSON


class TaskModel(BaseModel):
    model_config = _STRICT

    id: NulFree = Field(min_length=1)
    capability: NulFree = Field(min_length=1)
    prompt: NulFree = ""
    input: object = None
    depends_on: list[str] = Field(default_factory=list)
    priority: int = 0
    complexity: float = Field(default=0.5, ge=0.0, le=1.0)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    max_attempts: int = Field(default=3, ge=1)
    resources: list[str] = Field(default_factory=list)
    verify: VerifyModel | None = None
    metadata: dict[str, object] = Field(default_factory=dict)
    group: str | None = None
    key: str | None = None
    decompose: DecomposeModel | None = None
    budget: BudgetModel | None = None  # over this task's attempts
    estimate_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    min_proficiency: float | None = Field(default=None, ge=0.0, le=1.0)


class RoutingModel(BaseModel):
    """``settings.routing``: a mode alone (``thompson``) or these fields (docs/workflows.md)."""

    model_config = _STRICT

    mode: Literal["deterministic", "thompson"] | None = None
    objective: Literal["earliest_finish", "cheapest_meeting"] | None = None
    quality_target: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    cost_weight: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)  # s per USD


class SettingsModel(BaseModel):
    model_config = _STRICT

    max_concurrency: int | None = Field(default=None, ge=1)
    max_queued: int | None = Field(default=None, ge=1)
    default_timeout_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    routing: RoutingModel | None = None
    seed: int | None = None
    max_agents: int | None = Field(default=None, ge=1)
    spawn_threshold: int | None = Field(default=None, ge=0)
    idle_timeout_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    scale_cooldown_s: float | None = Field(default=None, ge=0, le=MAX_SECONDS)
    target_utilisation: float | None = Field(default=None, ge=0, le=1)
    scale_up_window_s: float | None = Field(default=None, ge=0, le=MAX_SECONDS)
    utilisation_window_s: float | None = Field(default=None, ge=0, le=MAX_SECONDS)
    heartbeat_interval_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    breaker_failures: int | None = Field(default=None, ge=1)
    aging_interval_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    capability_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    resource_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    # Journal retention: after a run, finished runs older than this are deleted (as ``gc``).
    retention_days: float | None = Field(default=None, gt=0, le=36_500)
    backend: Literal["local", "ray"] | None = None
    ray_address: NulFree | None = Field(default=None, min_length=1)
    budget: BudgetModel | None = None  # over the run's attempts
    pricing: dict[Annotated[str, Field(min_length=1)], PriceModel] = Field(default_factory=dict)
    # per capability: agents declaring less never take its tasks (applied to each task)
    min_proficiency: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict
    )

    @field_validator("routing", mode="before")
    @classmethod
    def _routing_mode(cls, value: object) -> object:
        """``routing: thompson`` is short for ``routing: {mode: thompson}``."""
        return {"mode": value} if isinstance(value, str) else value


class WorkflowModel(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    description: str = ""
    catalog: str | None = None
    settings: SettingsModel = Field(default_factory=SettingsModel)
    workspace: WorkspaceModel | None = None
    templates: dict[str, list[TaskModel]] = Field(default_factory=dict)
    agents: list[AgentModel] = Field(min_length=1)
    tasks: list[TaskModel] = Field(min_length=1)
