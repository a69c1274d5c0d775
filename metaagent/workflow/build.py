"""Workflow files: YAML that names agents (inline or from a catalog) and tasks.

Loading checks everything before anything runs. Every error names the file, the task id and
the field. Load-time placeholders in runner fields: ``{workflow_dir}`` (the file's directory)
and ``{python}`` (the interpreter running metaagent).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaagent.agents.command import CommandRunner, expand
from metaagent.agents.function import FunctionRunner
from metaagent.agents.llm import LlmConfig, LlmRunner
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.agents.process import ProcessLimits
from metaagent.catalog import Catalog, load_catalog
from metaagent.core.graph import TaskGraph
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask, Decompose, VerifySpec
from metaagent.errors import UnknownCapabilityError, WorkflowError
from metaagent.workflow.reader import describe_errors, read_yaml

_STRICT = ConfigDict(extra="forbid")
_RUNNER_TYPES = ("command", "persistent", "function", "llm")


class CommandRunnerModel(BaseModel):
    model_config = _STRICT

    type: Literal["command"]
    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    memory_limit_mb: int | None = Field(default=500, ge=16)
    cpu_limit_s: int | None = Field(default=None, ge=1)


class PersistentRunnerModel(BaseModel):
    model_config = _STRICT

    type: Literal["persistent"]
    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    memory_limit_mb: int | None = Field(default=500, ge=16)
    cpu_limit_s: int | None = Field(default=None, ge=1)


class FunctionRunnerModel(BaseModel):
    model_config = _STRICT

    type: Literal["function"]
    function: str = Field(pattern=r"^[\w.]+:[\w.]+$", description="module.path:callable")


class LlmRunnerModel(BaseModel):
    """An LLM agent (``metaagent.agents.llm``); needs the ``llm`` extra."""

    model_config = _STRICT

    type: Literal["llm"]
    provider: Literal["openai", "anthropic"]
    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    system: str = ""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int = Field(default=4096, ge=1)
    json_output: bool = False
    return_usage: bool = False
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    max_upstream_chars: int = Field(default=24_000, ge=0)


RunnerModel = Annotated[
    CommandRunnerModel | PersistentRunnerModel | FunctionRunnerModel | LlmRunnerModel,
    Field(discriminator="type"),
]


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
    runner: RunnerModel


class VerifyModel(BaseModel):
    model_config = _STRICT

    argv: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=120.0, gt=0)


class DecomposeModel(BaseModel):
    model_config = _STRICT

    template: str | None = None  # a name in the workflow's `templates`
    planner: bool = False  # the task's agent returns the plan as JSON


class TaskModel(BaseModel):
    model_config = _STRICT

    id: str = Field(min_length=1)
    capability: str = Field(min_length=1)
    prompt: str = ""
    input: object = None
    depends_on: list[str] = Field(default_factory=list)
    priority: int = 0
    complexity: float = Field(default=0.5, ge=0.0, le=1.0)
    timeout_s: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    resources: list[str] = Field(default_factory=list)
    verify: VerifyModel | None = None
    metadata: dict[str, object] = Field(default_factory=dict)
    group: str | None = None
    key: str | None = None
    decompose: DecomposeModel | None = None


class SettingsModel(BaseModel):
    model_config = _STRICT

    max_concurrency: int | None = Field(default=None, ge=1)
    max_queued: int | None = Field(default=None, ge=1)
    default_timeout_s: float | None = Field(default=None, gt=0)
    routing: Literal["deterministic", "thompson"] | None = None
    seed: int | None = None
    max_agents: int | None = Field(default=None, ge=1)
    spawn_threshold: int | None = Field(default=None, ge=0)
    idle_timeout_s: float | None = Field(default=None, gt=0)
    scale_cooldown_s: float | None = Field(default=None, ge=0)
    target_utilisation: float | None = Field(default=None, ge=0, le=1)
    scale_up_window_s: float | None = Field(default=None, ge=0)
    utilisation_window_s: float | None = Field(default=None, ge=0)
    heartbeat_interval_s: float | None = Field(default=None, gt=0)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0)
    breaker_failures: int | None = Field(default=None, ge=1)
    aging_interval_s: float | None = Field(default=None, gt=0)
    capability_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    resource_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)


class WorkflowModel(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    description: str = ""
    catalog: str | None = None
    settings: SettingsModel = Field(default_factory=SettingsModel)
    templates: dict[str, list[TaskModel]] = Field(default_factory=dict)
    agents: list[AgentModel] = Field(min_length=1)
    tasks: list[TaskModel] = Field(min_length=1)


@dataclass(slots=True)
class Workflow:
    """A loaded, validated workflow: ready to hand to an ``Orchestrator``."""

    name: str
    agents: list[AgentSpec]
    tasks: list[AgentTask]
    settings: SettingsModel
    source: str
    description: str = ""
    roles: dict[str, str] = field(default_factory=dict)


def load_workflow(path: str | Path, *, catalog: Catalog | None = None) -> Workflow:
    """Read and validate a workflow file. Raises ``WorkflowError`` (or a subclass)."""
    file = Path(path)
    raw = read_yaml(file, "workflow")
    return parse_workflow(raw, source=str(file), base_dir=file.resolve().parent, catalog=catalog)


def parse_workflow(
    raw: object,
    *,
    source: str = "<workflow>",
    base_dir: Path | None = None,
    catalog: Catalog | None = None,
) -> Workflow:
    """Validate a workflow already parsed into Python data (from YAML or JSON)."""
    if not isinstance(raw, dict):
        raise WorkflowError(
            "the top level must be a mapping with name, agents and tasks", where=source
        )
    try:
        model = WorkflowModel.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(describe_errors(exc, raw, skip=_RUNNER_TYPES), where=source) from exc
    base = base_dir or Path.cwd()
    if model.catalog is not None:
        cat_path = Path(model.catalog)
        catalog = load_catalog(cat_path if cat_path.is_absolute() else base / cat_path)
    elif catalog is None and any(a.role for a in model.agents):
        catalog = load_catalog()
    values = {"workflow_dir": str(base), "python": sys.executable}
    agents: list[AgentSpec] = []
    roles: dict[str, str] = {}
    seen: set[str] = set()
    for i, a in enumerate(model.agents):
        where = f"{source}: agents[{i}] (name {a.name!r})"
        if a.name in seen:
            raise WorkflowError(f"duplicate agent name {a.name!r}", where=where)
        seen.add(a.name)
        caps = a.capabilities
        concurrency = a.concurrency
        description = a.description
        if a.role is not None:
            assert catalog is not None
            role = catalog.get(a.role, where=f"{where}.role")
            caps = caps if caps is not None else role.capabilities
            concurrency = concurrency if concurrency is not None else role.concurrency
            description = description or role.description
            roles[a.name] = a.role
        if not caps:
            raise WorkflowError(
                "capabilities: required (or name a catalog role to take them from)", where=where
            )
        max_instances = a.max_instances if a.max_instances is not None else max(1, a.min_instances)
        if max_instances < a.min_instances:
            raise WorkflowError(
                f"max_instances ({max_instances}) is below min_instances ({a.min_instances})",
                where=where,
            )
        agents.append(
            AgentSpec(
                name=a.name,
                capabilities=dict(caps),
                runner=_runner(a.runner, values, f"{where}.runner"),
                role=a.role,
                concurrency=concurrency or 1,
                description=description,
                min_instances=a.min_instances,
                max_instances=max_instances,
                rate_per_min=a.rate_per_min,
            )
        )
    templates = {name: tuple(_task(m) for m in steps) for name, steps in model.templates.items()}
    tasks = []
    for i, tm in enumerate(model.tasks):
        where = f"{source}: tasks[{i}] (id {tm.id!r}).decompose"
        tasks.append(_task(tm, _decompose(tm.decompose, templates, where)))
    TaskGraph(tasks, where=source)  # duplicate ids, unknown dependencies, cycles
    known = sorted({cap for spec in agents for cap in spec.capabilities})
    for name, steps in templates.items():
        TaskGraph(steps, where=f"{source}: templates.{name}")
        for j, step in enumerate(steps):
            if step.capability not in known:
                raise UnknownCapabilityError(
                    step.capability, known,
                    where=f"{source}: templates.{name}[{j}] (id {step.id!r}).capability",
                )  # fmt: skip
    for i, t in enumerate(tasks):
        by_template = t.decompose is not None and bool(t.decompose.template)
        if t.capability not in known and not by_template:
            raise UnknownCapabilityError(
                t.capability, known, where=f"{source}: tasks[{i}] (id {t.id!r}).capability"
            )
    return Workflow(model.name, agents, tasks, model.settings, source, model.description, roles)


def _runner(
    m: CommandRunnerModel | PersistentRunnerModel | FunctionRunnerModel | LlmRunnerModel,
    values: dict[str, str],
    where: str,
) -> CommandRunner | PersistentCommandRunner | FunctionRunner | LlmRunner:
    if isinstance(m, LlmRunnerModel):
        try:  # a missing API key or httpx is reported now, before anything runs
            return LlmRunner(LlmConfig(**m.model_dump(exclude={"type"})))
        except WorkflowError as exc:
            raise WorkflowError(str(exc), where=where) from exc
    if isinstance(m, PersistentRunnerModel):
        return PersistentCommandRunner(
            [expand(a, values) for a in m.argv],
            cwd=expand(m.cwd, values) if m.cwd else None,
            env={k: expand(v, values) for k, v in m.env.items()},
            limits=ProcessLimits(memory_mb=m.memory_limit_mb, cpu_s=m.cpu_limit_s),
        )
    if isinstance(m, CommandRunnerModel):
        return CommandRunner(
            [expand(a, values) for a in m.argv],
            cwd=expand(m.cwd, values) if m.cwd else None,
            env={k: expand(v, values) for k, v in m.env.items()},
            limits=ProcessLimits(memory_mb=m.memory_limit_mb, cpu_s=m.cpu_limit_s),
        )
    module_name, _, attr = m.function.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise WorkflowError(
            f"function {m.function!r} cannot be imported: {exc}", where=where
        ) from exc
    if not callable(obj):
        raise WorkflowError(f"function {m.function!r} is not callable", where=where)
    return FunctionRunner(obj, name=m.function)


def _decompose(
    d: DecomposeModel | None, templates: dict[str, tuple[AgentTask, ...]], where: str
) -> Decompose | None:
    if d is None:
        return None
    if (d.template is None) == (not d.planner):
        raise WorkflowError("give exactly one of `template: NAME` or `planner: true`", where=where)
    if d.planner:
        return Decompose(planner=True)
    assert d.template is not None
    if d.template not in templates:
        known = ", ".join(sorted(templates)) or "(none defined)"
        raise WorkflowError(f"unknown template {d.template!r}; templates: {known}", where=where)
    return Decompose(template=templates[d.template])


def _task(t: TaskModel, decompose: Decompose | None = None) -> AgentTask:
    return AgentTask(
        id=t.id,
        capability=t.capability,
        prompt=t.prompt,
        input=t.input,
        priority=t.priority,
        depends_on=tuple(t.depends_on),
        complexity=t.complexity,
        timeout_s=t.timeout_s,
        max_attempts=t.max_attempts,
        resources=tuple(t.resources),
        verify=VerifySpec(tuple(t.verify.argv), t.verify.timeout_s) if t.verify else None,
        metadata=dict(t.metadata),
        group=t.group,
        key=t.key,
        decompose=decompose,
    )
