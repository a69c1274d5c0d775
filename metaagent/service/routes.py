"""The REST routes of v1: runs (submit, list, report, task, explain, cancel, retry) and agents.
Auth is checked before any of them (``app.Guard``); errors map to status codes in ``app``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from metaagent.errors import WorkflowError
from metaagent.report.explain import explain_task
from metaagent.report.stored import stored_report
from metaagent.service.core import NotFound, Submission, loads_document
from metaagent.service.store import RUN_STATES, ListQuery, decode_cursor

if TYPE_CHECKING:
    from metaagent.journal.base import StoredRun
    from metaagent.service.core import Service

__all__ = ["router"]

router = APIRouter(prefix="/v1")

RunState = Literal["running", "interrupted", "succeeded", "failed", "cancelled"]
assert set(RUN_STATES) == set(RunState.__args__)  # type: ignore[attr-defined]


class SubmitBody(BaseModel):
    """A workflow to run: its text (YAML or JSON) or document under ``workflow``, or the
    document's own fields (``name``, ``agents``, ``tasks``, ``settings``...) at the top."""

    model_config = ConfigDict(extra="allow")

    workflow: str | dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    labels: dict[str, str] = Field(default_factory=dict)


class Submitted(BaseModel):
    run_id: str
    state: str
    tasks: int


class CancelBody(BaseModel):
    task_ids: list[str] | None = None


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _submission(body: object) -> Submission:
    """The submission a request body holds (see ``SubmitBody``); ``WorkflowError`` (422)
    naming the field at fault."""
    if not isinstance(body, dict):
        raise WorkflowError("the body must be a JSON object", where="<request>")
    doc = dict(body)
    key = doc.pop("idempotency_key", None)
    priority = doc.pop("priority", 0)
    labels = doc.pop("labels", {})
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= 256):
        raise WorkflowError("idempotency_key: a string of 1 to 256 characters", where="<request>")
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1_000_000:
        raise WorkflowError("priority: an integer within -1000000..1000000", where="<request>")
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise WorkflowError("labels: an object of strings", where="<request>")
    workflow = doc.pop("workflow", None) if "workflow" in doc else doc
    if isinstance(workflow, str):  # YAML is a superset of JSON: read it as YAML
        return Submission(workflow, False, key, priority, labels)
    if workflow is None:
        raise WorkflowError(
            "workflow: the workflow's text or document is missing", where="<request>"
        )
    return Submission(json.dumps(workflow), True, key, priority, labels, doc=workflow)


_SUBMIT_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SubmitBody.model_json_schema()}},
    }
}


@router.post(
    "/runs",
    status_code=201,
    response_model=Submitted,
    responses={200: {"model": Submitted, "description": "The idempotency key's earlier run"},
               413: {}, 422: {}, 429: {}},
    tags=["runs"],
    openapi_extra=_SUBMIT_SCHEMA,
)  # fmt: skip
async def submit_run(request: Request) -> Any:
    """Submit a workflow; 201 once its run is journaled. The body is read here (not by the
    framework) so that a 10,000-task document is parsed once, duplicate keys refused."""
    raw = await request.body()
    body = await asyncio.to_thread(loads_document, raw)
    done = await _service(request).submit(_submission(body))
    answer = {"run_id": done.run_id, "state": done.state, "tasks": done.tasks}
    return JSONResponse(answer, status_code=201 if done.created else 200)


@router.get("/runs", tags=["runs"])
async def list_runs(
    request: Request,
    state: RunState | None = None,
    label: Annotated[list[str] | None, Query(description="k:v, repeatable")] = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Runs, newest first, one page at a time."""
    labels: dict[str, str] = {}
    for item in label or []:
        k, sep, v = item.partition(":")
        if not sep or not k:
            raise _invalid(f"label={item[:40]!r}: give it as key:value")
        labels[k] = v
    try:
        at = None if cursor is None else decode_cursor(cursor)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    q = ListQuery(state, labels, _time(since, "since"), _time(until, "until"), limit, at)
    service = _service(request)
    rows, next_cursor = await _thread(service, lambda: service.store.page(q))
    return {"runs": [r.to_json() for r in rows], "next_cursor": next_cursor}


def _invalid(message: str) -> Exception:
    return WorkflowError(message)


def _time(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise _invalid(
            f"{name}={text[:40]!r}: not a time (seconds since the epoch, or ISO 8601)"
        ) from None


async def _thread(service: Service, work: Any) -> Any:
    return await asyncio.to_thread(work)


async def _stored(service: Service, run_id: str, *, decisions: bool = True) -> StoredRun:
    try:
        stored: StoredRun = await service.side(lambda j: j.load_run(run_id, decisions=decisions))
    except KeyError:
        raise NotFound(f"no run {run_id!r}") from None
    return stored


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(request: Request, run_id: str) -> Any:
    """The run's report: the fields of ``metaagent run --json``, plus its state."""
    service = _service(request)
    # The state first: a report read after it is never behind it (a finished run reads whole).
    row = await _thread(service, lambda: service.store.row(run_id))
    stored = await _stored(service, run_id)
    if row is not None and row.finished_at is None and stored.info.finished:
        # It finished between the two reads (its end was committed meanwhile): read it again.
        row = await _thread(service, lambda: service.store.row(run_id))
    report = stored_report(stored)
    tasks: list[dict[str, Any]] = report["tasks"]  # type: ignore[assignment]
    depends = {t.id: list(t.depends_on) for t in stored.tasks}
    for t in tasks:  # for the dashboard's graph (the report's fields extended, none dropped)
        t["depends_on"] = depends.get(t["id"], [])
    report["state"] = row.state if row is not None else "interrupted"
    report["labels"] = row.labels if row is not None else {}
    report["priority"] = row.priority if row is not None else 0
    report["retry_of"] = row.retry_of if row is not None else None
    return JSONResponse(report)  # as it is: the framework's encoder is slow on a large report


@router.get("/runs/{run_id}/tasks/{task_id}", tags=["runs"])
async def get_task(request: Request, run_id: str, task_id: str) -> dict[str, Any]:
    """One task: its state, output, error, attempts (with logs), log and decisions."""
    stored = await _stored(_service(request), run_id)
    report = stored_report(stored)
    tasks: list[dict[str, Any]] = report["tasks"]  # type: ignore[assignment]
    entry = next((t for t in tasks if t["id"] == task_id), None)
    if entry is None:
        raise NotFound(f"run {run_id!r} has no task {task_id!r}")
    attempts = entry["attempts"]
    task = next(t for t in stored.tasks if t.id == task_id)
    return {
        "run_id": run_id,
        "task": {
            "id": task.id, "capability": task.capability, "prompt": task.prompt,
            "input": task.input, "depends_on": list(task.depends_on),
            "priority": task.priority, "max_attempts": task.max_attempts,
            "timeout_s": task.timeout_s, "group": task.group,
        },
        "state": entry["state"], "agent": entry["agent"],
        "agent_instance": entry["agent_instance"], "output": entry["output"],
        "error": entry["error"], "attempts": attempts,
        "log": attempts[-1]["log"] if attempts else None,
        "decisions": [d for d in stored.decisions if d.get("task_id") == task_id],
    }  # fmt: skip


@router.get("/runs/{run_id}/tasks/{task_id}/explain", tags=["runs"])
async def explain(request: Request, run_id: str, task_id: str) -> dict[str, Any]:
    """Why the task went where it went: what ``metaagent explain --json`` prints."""
    stored = await _stored(_service(request), run_id)
    try:
        trail = explain_task(stored, task_id)
    except KeyError:
        raise NotFound(f"run {run_id!r} has no task {task_id!r}") from None
    return trail.to_json()


@router.post("/runs/{run_id}/cancel", status_code=202, tags=["runs"])
async def cancel_run(
    request: Request, run_id: str, body: Annotated[CancelBody | None, Body()] = None
) -> dict[str, Any]:
    """Cancel the run's open tasks (or ``task_ids``); their dependents are skipped."""
    ids = None if body is None else body.task_ids
    done = await _service(request).cancel(run_id, ids)
    return {"run_id": run_id, "task_ids": done}


@router.post("/runs/{run_id}/retry", status_code=202, tags=["runs"])
async def retry_run(request: Request, run_id: str) -> dict[str, Any]:
    """Run the failed, cancelled and skipped tasks of a finished run again, in a new run."""
    return await _service(request).retry(run_id)


@router.get("/agents", tags=["agents"])
async def agents(request: Request) -> dict[str, Any]:
    """The pool: specs, instances with state and load, learned statistics, queue depth."""
    sched = _service(request).orch.scheduler
    specs = [
        {
            "name": sp.spec.name, "capabilities": dict(sp.spec.capabilities),
            "role": sp.spec.role, "description": sp.spec.description,
            "concurrency": sp.spec.concurrency, "min_instances": sp.min_instances,
            "max_instances": sp.max_instances, "runner": type(sp.spec.runner).__name__,
            "instances": len(sp.instances),
        }
        for sp in sched.pool.specs.values()
    ]  # fmt: skip
    instances = [
        {
            "id": i.id, "spec": i.spec.name, "state": i.state.value, "slots": i.slots,
            "running": i.running, "load": i.running / i.slots if i.slots else 0.0,
            "busy_s": round(i.busy_s, 6), "tasks_done": i.tasks_done,
            "consecutive_failures": i.consecutive_failures, "breaker_trips": i.breaker_trips,
        }
        for i in sched.agents.values()
    ]  # fmt: skip
    declared = {
        (name, cap): prof
        for name, sp in sched.pool.specs.items()
        for cap, prof in sp.spec.capabilities.items()
    }
    learning = sched.learning
    stats = [
        {
            "spec": spec, "capability": cap, "successes": a.successes, "failures": a.failures,
            "mean_duration_s": round(a.mean_duration_s, 6),
            "declared": declared.get((spec, cap)),
            "proficiency": round(learning.proficiency(spec, cap, declared[(spec, cap)]), 4)
            if (spec, cap) in declared else None,
        }
        for (spec, cap), a in sorted(learning.arms.items())
    ]  # fmt: skip
    return {
        "specs": specs,
        "instances": instances,
        "stats": stats,
        "queue_depth": sched.queue_depth(),
    }
