"""Building a workflow: a validated ``WorkflowModel`` turned into agents and tasks.

Loading checks everything before anything runs. Every error names the file, the task id and
the field. Load-time placeholders in runner fields: ``{workflow_dir}`` (the file's directory)
and ``{python}`` (the interpreter running metaagent).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from metaagent.agents.registry import BuildContext, build_runner, runner_types
from metaagent.core.budget import BudgetPlan
from metaagent.core.graph import TaskGraph
from metaagent.core.placement import Placement
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask, Decompose, VerifySpec
from metaagent.errors import UnknownCapabilityError, WorkflowError
from metaagent.workflow.budgets import budget_plan, workflow_pricing
from metaagent.workflow.coding import attach, make_workspace
from metaagent.workflow.limits import check_limit_keys
from metaagent.workflow.reader import describe_errors, parse_bytes, read_yaml
from metaagent.workflow.roles import AgentEntry, check_unique, merge_role, resolve_catalog
from metaagent.workflow.schema import WorkflowModel

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.catalog import Catalog
    from metaagent.core.budget import Price
    from metaagent.workflow.schema import AgentModel, DecomposeModel, SettingsModel, TaskModel
    from metaagent.workspace import Workspace

__all__ = ["Workflow", "load_workflow", "parse_workflow", "parse_workflow_text"]

Templates = dict[str, tuple[AgentTask, ...]]


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
    workspace: Workspace | None = None  # where coding agents work, one worktree per task
    budget: BudgetPlan = field(default_factory=BudgetPlan)  # the run's, tasks', agents'
    pricing: dict[str, Price] | None = None  # model prices (None: the shipped table)


def load_workflow(path: str | Path, *, catalog: Catalog | None = None) -> Workflow:
    """Read and validate a workflow file. Raises ``WorkflowError`` (or a subclass)."""
    file = Path(path)
    raw = read_yaml(file, "workflow")
    return parse_workflow(raw, source=str(file), base_dir=file.resolve().parent, catalog=catalog)


def parse_workflow_text(
    data: bytes | str,
    *,
    source: str = "<workflow>",
    base_dir: Path | None = None,
    catalog: Catalog | None = None,
    json: bool = False,
) -> Workflow:
    """Read and validate a workflow given as the bytes (or text) of a YAML or JSON file."""
    raw = parse_bytes(data, source, json=json)
    return parse_workflow(raw, source=source, base_dir=base_dir, catalog=catalog)


def parse_workflow(
    raw: object,
    *,
    source: str = "<workflow>",
    base_dir: Path | None = None,
    catalog: Catalog | None = None,
) -> Workflow:
    """Validate a workflow already parsed into Python data (from YAML or JSON)."""
    model = _validate(raw, source)
    base = base_dir or Path.cwd()
    catalog = resolve_catalog(
        model.catalog, base, needed=any(a.role for a in model.agents), given=catalog
    )
    values = {"workflow_dir": str(base), "python": sys.executable}
    workspace = make_workspace(model.workspace, base, source)
    agents = _agents(model.agents, catalog, values, source, workspace)
    templates = {name: tuple(_task(m) for m in steps) for name, steps in model.templates.items()}
    tasks = _tasks(model.tasks, templates, source)
    TaskGraph(tasks, where=source)  # duplicate ids, unknown dependencies, cycles
    known = sorted({cap for spec in agents for cap in spec.capabilities})
    floors = model.settings.min_proficiency
    if floors:
        tasks = _with_floors(tasks, floors, known, source)
        templates = {k: tuple(_with_floors(list(v), floors, known, source))
                     for k, v in templates.items()}  # fmt: skip
    _check_templates(templates, known, source)
    _check_tasks(tasks, known, source)
    check_limit_keys(
        model.settings, known, [*tasks, *(t for s in templates.values() for t in s)], source
    )
    roles = {spec.name: spec.role for spec in agents if spec.role is not None}
    return Workflow(
        model.name,
        agents,
        tasks,
        model.settings,
        source,
        model.description,
        roles,
        workspace,
        budget_plan(model, source),
        workflow_pricing(model),
    )


def _validate(raw: object, source: str) -> WorkflowModel:
    if not isinstance(raw, dict):
        raise WorkflowError(
            "the top level must be a mapping with name, agents and tasks", where=source
        )
    try:
        return WorkflowModel.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(describe_errors(exc, raw, skip=runner_types()), where=source) from exc


def _agents(
    models: list[AgentModel],
    catalog: Catalog | None,
    values: Mapping[str, str],
    source: str,
    workspace: Workspace | None = None,
) -> list[AgentSpec]:
    seen: set[str] = set()
    agents = []
    for i, a in enumerate(models):
        where = f"{source}: agents[{i}] (name {a.name!r})"
        check_unique(a.name, seen, where=where)
        agents.append(_agent(a, catalog, values, where, workspace))
    return agents


def _agent(
    a: AgentModel,
    catalog: Catalog | None,
    values: Mapping[str, str],
    where: str,
    workspace: Workspace | None = None,
) -> AgentSpec:
    entry = AgentEntry(a.name, a.role, a.capabilities, a.concurrency, a.description)
    merged = merge_role(entry, catalog, where=where)
    max_instances = a.max_instances if a.max_instances is not None else max(1, a.min_instances)
    if max_instances < a.min_instances:
        raise WorkflowError(
            f"max_instances ({max_instances}) is below min_instances ({a.min_instances})",
            where=where,
        )
    runner = build_runner(a.runner, BuildContext(values, f"{where}.runner"))
    return AgentSpec(
        name=merged.name,
        capabilities=merged.capabilities,
        runner=attach(runner, a, merged.role, workspace, values, where),
        role=merged.role,
        concurrency=merged.concurrency,
        description=merged.description,
        min_instances=a.min_instances,
        max_instances=max_instances,
        rate_per_min=a.rate_per_min,
        cost_per_call_usd=a.cost_per_call_usd,
        placement=None if a.ray is None else Placement(**a.ray.model_dump()),
    )


def _tasks(models: list[TaskModel], templates: Templates, source: str) -> list[AgentTask]:
    return [
        _task(
            tm,
            _decompose(tm.decompose, templates, f"{source}: tasks[{i}] (id {tm.id!r}).decompose"),
        )
        for i, tm in enumerate(models)
    ]


def _with_floors(
    tasks: list[AgentTask], floors: dict[str, float], known: list[str], source: str
) -> list[AgentTask]:
    """Apply ``settings.min_proficiency`` (per capability) to each task of that capability."""
    for cap in floors:
        if cap not in known:
            raise UnknownCapabilityError(cap, known, where=f"{source}: settings.min_proficiency")
    out = []
    for t in tasks:
        floor = floors.get(t.capability)
        if floor is not None and (t.min_proficiency is None or t.min_proficiency < floor):
            t = replace(t, min_proficiency=floor)
        out.append(t)
    return out


def _check_templates(templates: Templates, known: list[str], source: str) -> None:
    for name, steps in templates.items():
        TaskGraph(steps, where=f"{source}: templates.{name}")
        for j, step in enumerate(steps):
            if step.capability not in known:
                raise UnknownCapabilityError(
                    step.capability, known,
                    where=f"{source}: templates.{name}[{j}] (id {step.id!r}).capability",
                )  # fmt: skip


def _check_tasks(tasks: list[AgentTask], known: list[str], source: str) -> None:
    for i, t in enumerate(tasks):
        # a task a template decomposes is not run itself: its capability need not exist
        by_template = t.decompose is not None and bool(t.decompose.template)
        if t.capability not in known and not by_template:
            raise UnknownCapabilityError(
                t.capability, known, where=f"{source}: tasks[{i}] (id {t.id!r}).capability"
            )


def _decompose(d: DecomposeModel | None, templates: Templates, where: str) -> Decompose | None:
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
        estimate_s=t.estimate_s,
        min_proficiency=t.min_proficiency,
    )
