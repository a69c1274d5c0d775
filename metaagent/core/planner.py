"""Decomposition: turning one large task into a validated graph of sub-tasks.

A plan comes from a template (a list of sub-tasks written in the workflow) or from a planner
agent: any runner whose output is JSON ``{"tasks": [{id, capability, prompt, depends_on, ...}]}``
(a bare list is accepted too). A plan is checked like a workflow (schema, duplicate ids, unknown
dependencies, cycles, unknown capabilities); the errors are fed back to the planner on its next
attempt. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from metaagent.core.graph import TaskGraph
from metaagent.core.tasks import AgentTask, Decompose
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

__all__ = ["Decompose", "InvalidPlan", "expand", "parse_plan", "sub_id"]

_FIELDS = {
    "id", "capability", "prompt", "input", "depends_on", "priority", "complexity", "timeout_s",
    "max_attempts", "metadata", "estimate_s", "min_proficiency",
}  # fmt: skip


class InvalidPlan(WorkflowError):
    """A planner's output is not a valid sub-graph; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str], *, where: str | None = None) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid plan: " + "; ".join(self.problems), where=where)


def sub_id(parent: str, child: str) -> str:
    """The id a sub-task gets inside its run: ``parent/child``."""
    return f"{parent}/{child}"


def parse_plan(output: object) -> list[dict[str, object]]:
    """The sub-task list of a planner's output (JSON text, a dict with ``tasks``, or a list)."""
    data = output
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InvalidPlan([f"output is not JSON: {exc}"]) from None
    if isinstance(data, dict):
        data = data.get("tasks")
    if not isinstance(data, list) or not data:
        raise InvalidPlan(['expected {"tasks": [...]} with at least one sub-task'])
    problems = [
        f"tasks[{i}]: must be a mapping" for i, t in enumerate(data) if not isinstance(t, dict)
    ]
    if problems:
        raise InvalidPlan(problems)
    return data


def expand(
    parent: AgentTask,
    plan: Sequence[Mapping[str, object] | AgentTask],
    known_capabilities: Collection[str],
) -> list[AgentTask]:
    """Sub-tasks of ``parent`` from a plan, with ids namespaced under the parent.

    Sub-tasks inherit the parent's priority and resources; dependencies name sibling ids.
    Raises ``InvalidPlan`` listing every problem found.
    """
    problems: list[str] = []
    subs: list[AgentTask] = []
    for i, item in enumerate(plan):
        if isinstance(item, AgentTask):
            task: AgentTask | None = item
        else:
            task = _from_mapping(item, i, problems)
        if task is None:
            continue
        if task.capability not in known_capabilities:
            problems.append(
                f"tasks[{i}] (id {task.id!r}).capability: unknown capability {task.capability!r}"
            )
        subs.append(task)
    if problems:
        raise InvalidPlan(problems)
    try:
        TaskGraph(subs, where="plan")
    except WorkflowError as exc:
        raise InvalidPlan([str(exc)]) from None
    return [
        AgentTask(
            id=sub_id(parent.id, t.id),
            capability=t.capability,
            prompt=t.prompt,
            input=t.input,
            priority=max(t.priority, parent.priority),
            depends_on=tuple(sub_id(parent.id, d) for d in t.depends_on),
            complexity=t.complexity,
            timeout_s=t.timeout_s if t.timeout_s is not None else parent.timeout_s,
            max_attempts=t.max_attempts,
            resources=tuple(dict.fromkeys((*parent.resources, *t.resources))),
            verify=t.verify,
            metadata={**t.metadata, "parent": parent.id},
            estimate_s=t.estimate_s,
            min_proficiency=(
                t.min_proficiency if t.min_proficiency is not None else parent.min_proficiency
            ),
        )
        for t in subs
    ]


def _from_mapping(item: Mapping[str, object], i: int, problems: list[str]) -> AgentTask | None:
    where = f"tasks[{i}]"
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")
    tid, cap = item.get("id"), item.get("capability")
    if not isinstance(tid, str) or not tid or "/" in tid:
        problems.append(f"{where}.id: must be a non-empty string without '/'")
        return None
    where = f"{where} (id {tid!r})"
    if not isinstance(cap, str) or not cap:
        problems.append(f"{where}.capability: must be a non-empty string")
        return None
    deps = item.get("depends_on", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        problems.append(f"{where}.depends_on: must be a list of ids")
        return None
    prompt = item.get("prompt", "")
    try:
        task = AgentTask(
            id=tid,
            capability=cap,
            prompt=prompt if isinstance(prompt, str) else json.dumps(prompt),
            input=item.get("input"),
            priority=int(item.get("priority", 0)),  # type: ignore[call-overload]
            depends_on=tuple(deps),
            complexity=float(item.get("complexity", 0.5)),  # type: ignore[arg-type]
            timeout_s=None if item.get("timeout_s") is None else float(item["timeout_s"]),  # type: ignore[arg-type]
            max_attempts=int(item.get("max_attempts", 3)),  # type: ignore[call-overload]
            metadata=dict(item.get("metadata") or {}),  # type: ignore[call-overload]
            estimate_s=_opt_float(item.get("estimate_s")),
            min_proficiency=_opt_float(item.get("min_proficiency")),
        )
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: {exc}")
        return None
    bad = task.problems()
    problems.extend(f"{where}.{p}" for p in bad)
    return None if bad else task


def _opt_float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]
