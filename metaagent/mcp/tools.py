"""The tools: a short list, each a thin call of the REST API v1. Every failure comes back as a
result with ``is_error`` set and ``{"error": {"code", "status", "message"}}`` as its structured
content (the service's own message: the loader's, as the CLI prints it), never as a crash."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context  # noqa: TC002 (the SDK reads annotations)
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from metaagent.mcp.api import ApiError
from metaagent.mcp.views import TERMINAL, agents_view, run_summary, task_view

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mcp.server.mcpserver import MCPServer

    from metaagent.mcp.api import Api

__all__ = ["MAX_WAIT_S", "TOOL_NAMES", "register_tools"]

MAX_WAIT_S = 50.0
"""``wait_run`` returns by then, under the 60 s most clients give a call."""

TOOL_NAMES = (
    "submit_run", "get_run", "wait_run", "list_runs", "get_task", "explain_task",
    "cancel_run", "retry_run", "list_agents",
)  # fmt: skip

_CODES = {0: "unreachable", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          409: "conflict", 413: "too_large", 422: "invalid", 429: "busy"}  # fmt: skip
_HINTS = {
    "invalid": "fix what the message names and call again",
    "not_found": "list_runs shows the runs there are",
    "busy": "the queue is full: wait_run on a running run, then submit again",
    "unreachable": "is the metaagent server running?",
}

RunId = Annotated[str, Field(description="The run's id, as submit_run or list_runs gave it.")]
TaskId = Annotated[str, Field(description="The task's id in the workflow.")]


def ok(doc: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(doc, indent=1))], structured_content=doc
    )


def failed(code: str, message: str, status: int | None = None) -> CallToolResult:
    err: dict[str, Any] = {"code": code, "status": status, "message": message}
    if code in _HINTS:
        err["hint"] = _HINTS[code]
    doc = {"error": err}
    return CallToolResult(
        content=[TextContent(type="text", text=f"{code}: {message}")],
        structured_content=doc,
        is_error=True,
    )


async def guarded(work: Awaitable[dict[str, Any]]) -> CallToolResult:
    """``work``'s document, or its failure as a structured error result."""
    try:
        return ok(await work)
    except ApiError as exc:
        return failed(_CODES.get(exc.status, "error"), exc.detail, exc.status or None)
    except LookupError as exc:
        return failed("not_found", str(exc.args[0]) if exc.args else str(exc))
    except ValueError as exc:
        return failed("invalid", str(exc))


def _submission(
    workflow_yaml: str | None,
    tasks: list[dict[str, Any]] | None,
    agents: list[dict[str, Any]] | None,
    name: str | None,
) -> str | dict[str, Any]:
    if (workflow_yaml is None) == (tasks is None):
        raise ValueError("give either workflow_yaml (the workflow file's text) or tasks")
    if workflow_yaml is not None:
        if agents is not None or name is not None:
            raise ValueError("agents and name go inside workflow_yaml when it is given")
        return workflow_yaml
    return {"name": name or "mcp-run", "agents": agents or [], "tasks": tasks}


def register_tools(server: MCPServer[Any], api: Api) -> None:
    """Add the tools of ``TOOL_NAMES`` to ``server``, each calling ``api``."""
    read = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=ToolAnnotations(idempotent_hint=False, open_world_hint=False))
    async def submit_run(
        workflow_yaml: Annotated[
            str | None, Field(description="A workflow file's text (YAML or JSON).")
        ] = None,
        tasks: Annotated[
            list[dict[str, Any]] | None,
            Field(
                description="Instead of workflow_yaml: task entries {id, capability, prompt, "
                "depends_on?} run on `agents` (and the agents the server already has)."
            ),
        ] = None,
        agents: Annotated[list[dict[str, Any]] | None, Field(description="With tasks.")] = None,
        name: Annotated[str | None, Field(description="With tasks: the run's name.")] = None,
        idempotency_key: Annotated[str | None, Field(min_length=1, max_length=256)] = None,
        priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0,
        labels: dict[str, str] | None = None,
    ) -> CallToolResult:
        """Start a run of a workflow and return its run_id at once (it runs in the background:
        follow it with wait_run or get_run). The workflow is checked as `metaagent validate`
        checks it (schema, agents, capabilities, dependency cycles); a bad one is refused with
        the message naming what and where, an unknown capability lists the known ones. The same
        idempotency_key again returns the run it started."""

        async def work() -> dict[str, Any]:
            doc = _submission(workflow_yaml, tasks, agents, name)
            body = {"workflow": doc, "priority": priority, "labels": labels or {}}
            if idempotency_key is not None:
                body["idempotency_key"] = idempotency_key
            answer: dict[str, Any] = await api.call("POST", "/v1/runs", body=body)
            return answer

        return await guarded(work())

    @server.tool(annotations=read)
    async def get_run(run_id: RunId, include_tasks: bool = False) -> CallToolResult:
        """A run now: state (running, interrupted, succeeded, failed, cancelled), task counts by
        state, makespan, labels, the running tasks, and every failed, skipped or cancelled task
        with its error. include_tasks adds each task's state, agent and dependencies."""

        async def work() -> dict[str, Any]:
            report = await api.call("GET", f"/v1/runs/{run_id}")
            return run_summary(report, include_tasks=include_tasks)

        return await guarded(work())

    @server.tool(annotations=read)
    async def wait_run(
        run_id: RunId,
        ctx: Context,
        timeout_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 45.0,
    ) -> CallToolResult:
        """Wait for a run to finish, at most timeout_s seconds (50 at most, so the call ends
        before a client's timeout). Reports progress (tasks finished of all) while waiting.
        Returns the run's summary as get_run does; when it has not finished by then,
        still_running is true: call wait_run again."""
        return await guarded(_wait(api, run_id, timeout_s, ctx))

    @server.tool(annotations=read)
    async def list_runs(
        state: Literal["running", "interrupted", "succeeded", "failed", "cancelled"] | None = None,
        label: Annotated[str | None, Field(description="key:value")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the last page")] = None,
    ) -> CallToolResult:
        """Runs, newest first: id, name, state, task counts, labels; filter by state and by
        one label; next_cursor pages on."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("state", state), ("label", label), ("cursor", cursor)):
            if value is not None:
                params[key] = value
        return await guarded(api.call("GET", "/v1/runs", params=params))

    @server.tool(annotations=read)
    async def get_task(run_id: RunId, task_id: TaskId) -> CallToolResult:
        """One task of a run: its definition, state, agent, output (capped at 8,000
        characters, with a marker when cut), error, the tail of its log (stderr) and every
        attempt with its agent, outcome and error."""

        async def work() -> dict[str, Any]:
            return task_view(await api.call("GET", f"/v1/runs/{run_id}/tasks/{task_id}"))

        return await guarded(work())

    @server.tool(annotations=read)
    async def explain_task(run_id: RunId, task_id: TaskId) -> CallToolResult:
        """Why a task went to the agent it went to: each routing decision with the candidates'
        scores by part (wait, run, retry, scarcity, penalty, success, cost in USD) and weights,
        the runner-up and what decided the margin; retries and waits too (what `metaagent
        explain --json` prints)."""
        return await guarded(api.call("GET", f"/v1/runs/{run_id}/tasks/{task_id}/explain"))

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False))
    async def cancel_run(
        run_id: RunId,
        task_ids: Annotated[
            list[str] | None, Field(description="Only these tasks (default: the whole run).")
        ] = None,
    ) -> CallToolResult:
        """Cancel a running run's open tasks (or only task_ids); their dependents are skipped.
        Tasks that finished keep their results."""
        body = None if task_ids is None else {"task_ids": task_ids}
        return await guarded(api.call("POST", f"/v1/runs/{run_id}/cancel", body=body))

    @server.tool(annotations=ToolAnnotations(idempotent_hint=False, open_world_hint=False))
    async def retry_run(run_id: RunId) -> CallToolResult:
        """Run the failed, cancelled and skipped tasks of a finished run again, in a new run
        (returned: run_id, and which tasks rerun and which keep their results)."""
        return await guarded(api.call("POST", f"/v1/runs/{run_id}/retry"))

    @server.tool(annotations=read)
    async def list_agents(
        capability: Annotated[str | None, Field(description="Only agents offering it.")] = None,
    ) -> CallToolResult:
        """The agent pool: specs with their capabilities (declared proficiency), instances
        with state and load, learned statistics per agent and capability (successes, failures,
        mean duration, learned proficiency), queue depth per capability."""

        async def work() -> dict[str, Any]:
            return agents_view(await api.call("GET", "/v1/agents"), capability)

        return await guarded(work())


async def _wait(api: Api, run_id: str, timeout_s: float, ctx: Context) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout_s, MAX_WAIT_S)
    head = await api.head()  # before the report: no event after it is missed
    report = await api.call("GET", f"/v1/runs/{run_id}")
    states = {t["id"]: t["state"] for t in report.get("tasks", [])}
    progress = Progress(states, ctx.report_progress)
    if report.get("finished"):
        await progress.send("finished")
        return run_summary(report) | {"still_running": False}
    await progress.send("waiting")
    try:
        async with asyncio.timeout_at(deadline), aclosing(api.run_events(run_id, head)) as events:
            async for ev in events:
                if progress.moved(ev):
                    await progress.send(f"{ev['task_id']}: {ev['state']}")
    except TimeoutError:
        pass
    report = await api.call("GET", f"/v1/runs/{run_id}")
    doc = run_summary(report)
    doc["still_running"] = not report.get("finished")
    if doc["still_running"]:
        doc["hint"] = (
            "not finished yet: call wait_run again"
            if report.get("state") == "running"
            else "nobody executes this run now (resume it: metaagent resume RUN)"
        )
    return doc


class Progress:
    """Progress notifications: tasks finished of all (counted as they move, decomposed tasks
    joining the total), sent only when the count grows (the protocol wants it increasing)."""

    def __init__(
        self, states: dict[str, str], send: Callable[[float, float | None, str | None], Any]
    ) -> None:
        self.states = states
        self.done = sum(1 for s in states.values() if s in TERMINAL)
        self.sent = -1
        self._send = send

    def moved(self, ev: dict[str, Any]) -> bool:
        """Record a task event's new state; whether the count of finished tasks grew."""
        task_id, state = ev.get("task_id"), ev.get("state")
        if ev.get("type") != "task" or not isinstance(task_id, str) or not isinstance(state, str):
            return False
        before = self.states.get(task_id)
        self.states[task_id] = state
        if state in TERMINAL and before not in TERMINAL:
            self.done += 1
            return True
        return False

    async def send(self, message: str) -> None:
        if self.done > self.sent:
            self.sent = self.done
            total = len(self.states)
            await self._send(self.done, total or None, f"{self.done}/{total} tasks done; {message}")
