"""Turning tasks, attempts and outputs into journal rows and back."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from metaagent.core.tasks import (
    AgentTask,
    Attempt,
    Decompose,
    Outcome,
    TaskState,
    Usage,
    VerifySpec,
)
from metaagent.journal.base import StoredResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

TaskRow = tuple[
    str, str, int, str, str, str | None, int, str, float, float | None, int, str,
    str | None, str | None, str | None,
]  # fmt: skip


_ENCODE = json.JSONEncoder(default=str, separators=(",", ":")).encode


def dumps(value: object) -> str | None:
    """JSON text for a value (``None`` stays NULL); what JSON cannot hold becomes its ``str``."""
    return None if value is None else _ENCODE(value)


def dumps_ids(ids: tuple[str, ...]) -> str:
    """A JSON list of ids (most tasks have none: that case costs nothing)."""
    return _ENCODE(list(ids)) if ids else "[]"


def loads(text: str | None) -> object:
    return None if text is None else json.loads(text)


def task_row(run_id: str, seq: int, t: AgentTask) -> TaskRow:
    verify = (
        None
        if t.verify is None
        else dumps({"argv": t.verify.argv, "timeout_s": t.verify.timeout_s})
    )
    return (
        run_id,
        t.id,
        seq,
        t.capability,
        t.prompt,
        dumps(t.input),
        t.priority,
        dumps_ids(t.depends_on),
        t.complexity,
        t.timeout_s,
        t.max_attempts,
        dumps_ids(t.resources),
        verify,
        dumps(t.metadata) if t.metadata else None,
        t.key,
    )


def tasks_doc(tasks: Iterable[AgentTask]) -> str:
    """All tasks of a run as one JSON document; fields at their defaults are left out."""
    return _ENCODE([_task_doc(t) for t in tasks])


def _task_doc(t: AgentTask) -> dict[str, object]:
    d: dict[str, object] = {"id": t.id, "capability": t.capability}
    if t.prompt:
        d["prompt"] = t.prompt
    if t.input is not None:
        d["input"] = t.input
    if t.priority:
        d["priority"] = t.priority
    if t.depends_on:
        d["depends_on"] = t.depends_on
    if t.complexity != 0.5:
        d["complexity"] = t.complexity
    if t.timeout_s is not None:
        d["timeout_s"] = t.timeout_s
    if t.max_attempts != 3:
        d["max_attempts"] = t.max_attempts
    if t.resources:
        d["resources"] = t.resources
    if t.verify is not None:
        d["verify"] = {"argv": t.verify.argv, "timeout_s": t.verify.timeout_s}
    if t.metadata:
        d["metadata"] = t.metadata
    if t.key is not None:
        d["key"] = t.key
    if t.group is not None:
        d["group"] = t.group
    if t.decompose is not None:
        d["decompose"] = _decompose_doc(t.decompose)
    return d


def _decompose_doc(plan: Decompose) -> dict[str, object]:
    """Inverse of ``_decompose``."""
    if plan.planner:
        return {"planner": True}
    return {"template": [_task_doc(s) for s in plan.template]}


def tasks_from_doc(text: str) -> list[AgentTask]:
    """Inverse of ``tasks_doc``."""
    return tasks_from_list(json.loads(text))


def tasks_from_list(docs: Iterable[dict[str, Any]]) -> list[AgentTask]:
    """Tasks from the decoded documents of ``tasks_doc``.

    A document's keys are the task's field names (fields at their defaults left out), so it
    is passed as keywords as it is; only the fields that JSON cannot hold as they are (tuples,
    nested specs) are converted after.
    """
    out: list[AgentTask] = []
    append = out.append
    for d in docs:
        task = AgentTask(**d)
        size = len(d)
        if "depends_on" in d:
            task.depends_on = tuple(task.depends_on)
            size -= 1
        if size > 2:  # a field besides id, capability and depends_on: a rarer task
            if "resources" in d:
                task.resources = tuple(task.resources)
            verify: Any = task.verify
            if verify is not None:
                task.verify = VerifySpec(tuple(verify["argv"]), verify["timeout_s"])
            plan: Any = task.decompose
            if plan is not None:
                task.decompose = _decompose(plan)
        append(task)
    return out


def _decompose(d: dict[str, Any]) -> Decompose:
    if d.get("planner"):
        return Decompose(planner=True)
    return Decompose(template=tuple(tasks_from_list(d["template"])))


TASK_COLUMNS = (
    "task_id, capability, prompt, input, priority, depends_on, complexity, timeout_s,"
    " max_attempts, resources, verify, metadata, key"
)
"""The columns ``tasks_from_rows`` reads, in its order."""

_EMPTY: tuple[str, ...] = ()
_STATES = {s.value: s for s in TaskState}
_OUTCOMES = {o.value: o for o in Outcome}


def bulk_loads(texts: Sequence[str | None]) -> list[object]:
    """Decode many JSON texts (``None`` is NULL) with one call into the C decoder.

    A run holds as many rows as tasks: one ``json.loads`` per row would cost more than the
    rest of recovery together.
    """
    if not texts:
        return []
    return json.loads("[" + ",".join(["null" if t is None else t for t in texts]) + "]")  # type: ignore[no-any-return]


def tasks_from_rows(rows: Sequence[tuple[Any, ...]]) -> list[AgentTask]:
    """The tasks of rows of ``TASK_COLUMNS`` (inverse of ``task_row``)."""
    deps = bulk_loads([r[5] for r in rows])
    inputs = bulk_loads([r[3] for r in rows])
    out: list[AgentTask] = []
    append = out.append
    for (tid, cap, prompt, _, prio, _, cx, tmo, maxa, res, verify, meta, key), inp, dep in zip(
        rows, inputs, deps, strict=True
    ):
        append(
            AgentTask(
                tid,
                cap,
                prompt,
                inp,
                prio,
                tuple(dep) if dep else _EMPTY,  # type: ignore[arg-type]
                cx,
                tmo,
                maxa,
                _EMPTY if res == "[]" else tuple(json.loads(res)),
                None if verify is None else _verify(verify),
                {} if meta is None else json.loads(meta),
                key,
            )
        )
    return out


def _verify(text: str) -> VerifySpec:
    v = json.loads(text)
    return VerifySpec(tuple(v["argv"]), float(v["timeout_s"]))


def results_from_rows(rows: Sequence[tuple[Any, ...]]) -> dict[str, StoredResult]:
    """Terminal states from rows of ``task_id, state, output, error, finished_at``."""
    outputs = bulk_loads([r[2] for r in rows])
    states = _STATES
    return {
        tid: StoredResult(states[state], output, err, at)
        for (tid, state, _, err, at), output in zip(rows, outputs, strict=True)
    }


ATTEMPT_COLUMNS = (
    "task_id, number, agent, instance, started_at, finished_at, outcome, error, log, usage"
)
"""The columns ``attempts_from_rows`` reads, in its order."""


def attempts_from_rows(rows: Iterable[tuple[Any, ...]]) -> dict[str, list[Attempt]]:
    """Attempts by task from rows of ``ATTEMPT_COLUMNS`` ordered by task and number."""
    outcomes = _OUTCOMES
    out: dict[str, list[Attempt]] = {}
    for tid, number, agent, instance, started, finished, outcome, error, log, usage in rows:
        attempt = Attempt(
            number, agent, instance, started, finished,
            None if outcome is None else outcomes[outcome], error, log,
            None if usage is None else Usage.from_json(json.loads(usage)),
        )  # fmt: skip
        seen = out.get(tid)
        if seen is None:
            out[tid] = [attempt]
        else:
            seen.append(attempt)
    return out
