"""The MCP server object: the tools, the resources (a run's report, its DAG, the agents), the
prompts, and the watcher that tells subscribed clients when a run changes.

``MetaagentMCP(api).server`` is the SDK's ``MCPServer``; ``async with mcp.watching():`` keeps
the watcher running (stdio, the mount on ``metaagent serve`` and tests all do so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from metaagent import __version__
from metaagent.mcp.api import ApiError
from metaagent.mcp.prompts import register_prompts
from metaagent.mcp.tools import register_tools
from metaagent.mcp.views import dag_view

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from metaagent.mcp.api import Api, Changes

__all__ = ["AGENTS_URI", "INSTRUCTIONS", "MetaagentMCP", "dag_uri", "run_uri"]

AGENTS_URI = "metaagent://agents"
INSTRUCTIONS = (
    "metaagent runs DAGs of tasks in parallel, each on the agent best suited to it. "
    "Plan a workflow (prompt plan_workflow), submit_run it, follow it with wait_run (returns "
    "within 50 s: call it again while still_running), read results with get_run / get_task, "
    "and ask explain_task why a task went where it went. Errors come back as results with "
    "error.code and error.message: fix what the message names and call again."
)


def run_uri(run_id: str) -> str:
    return f"metaagent://runs/{run_id}"


def dag_uri(run_id: str) -> str:
    return f"metaagent://runs/{run_id}/dag"


class MetaagentMCP:
    """The server over ``api``, and its watcher."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.bus = InMemorySubscriptionBus()
        self.server: MCPServer[Any] = MCPServer(
            "metaagent",
            version=__version__,
            instructions=INSTRUCTIONS,
            subscriptions=self.bus,
            log_level="WARNING",
        )
        register_tools(self.server, api)
        register_prompts(self.server, api)
        self._resources()

    def _resources(self) -> None:
        server, api = self.server, self.api

        @server.resource("metaagent://runs/{run_id}", name="run", mime_type="application/json")
        async def run_report(run_id: str) -> str:
            """A run's report: what `metaagent run --json` prints, plus its state."""
            return json.dumps(await _read(api, f"/v1/runs/{run_id}", run_uri(run_id)))

        @server.resource(
            "metaagent://runs/{run_id}/dag", name="run_dag", mime_type="application/json"
        )
        async def run_dag(run_id: str) -> str:
            """A run's tasks (state, agent) and edges (dependency -> dependent)."""
            report = await _read(api, f"/v1/runs/{run_id}", dag_uri(run_id))
            return json.dumps(dag_view(report))

        @server.resource(AGENTS_URI, name="agents", mime_type="application/json")
        async def agents() -> str:
            """The agent pool: specs, instances with state and load, learned statistics."""
            return json.dumps(await _read(api, "/v1/agents", AGENTS_URI))

    async def watch(self) -> None:
        """Publish a change of every run that has an event (its report and DAG), and of the
        agents when tasks move or the pool changes, to the clients subscribed; forever. A
        burst of events is one update per URI."""
        async with contextlib.aclosing(self.api.changes()) as changes:
            await self._publish(changes)

    async def _publish(self, changes: AsyncIterator[Changes]) -> None:
        async for changed in changes:
            for run_id in sorted(changed.runs):
                await self.bus.publish(ResourceUpdated(uri=run_uri(run_id)))
                await self.bus.publish(ResourceUpdated(uri=dag_uri(run_id)))
            if changed.agents:
                await self.bus.publish(ResourceUpdated(uri=AGENTS_URI))

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """The watcher runs while in this block."""
        task = asyncio.create_task(self._watch_logged())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch_logged(self) -> None:
        try:
            await self.watch()
        except (ApiError, OSError) as exc:  # subscriptions end; the tools go on
            print(f"metaagent mcp: run changes no longer followed: {exc}", file=sys.stderr)


async def _read(api: Api, path: str, uri: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = await api.call("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            raise ResourceNotFoundError(exc.detail) from None
        raise ResourceError(f"{uri}: {exc.detail}") from None
    return doc
