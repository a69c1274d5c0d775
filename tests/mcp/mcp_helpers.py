"""Shared by the MCP tests: the server in memory (an embedded service on a real SQLite journal
in a temporary folder, the SDK's own client connected to the server object), workflows, and
readers of results.

A context manager rather than fixtures: the SDK's task groups must be entered and left in one
task, and an async fixture's teardown runs in another."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from mcp import Client

from metaagent.mcp.api import embedded
from metaagent.mcp.server import MetaagentMCP
from metaagent.workflow.schema import SettingsModel
from metaagent.workflow.settings import Overrides, orchestrator_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from mcp.types import CallToolResult


@contextlib.asynccontextmanager
async def in_memory(tmp: Path) -> AsyncIterator[Client]:
    """A client of a fresh server on ``tmp/journal.db``."""
    config = orchestrator_config(SettingsModel(), Overrides(), workdir=tmp, task_count=0)
    async with embedded(tmp / "journal.db", config) as api:
        server = MetaagentMCP(api)
        async with server.watching(), Client(server.server, raise_exceptions=True) as client:
            yield client


SLEEPER = """\
name: sleeper
agents:
  - name: sleepy
    capabilities: {waiting: 0.8}
    runner: {type: command, argv: ["python3", "-c", "import sys,time; time.sleep(float(sys.argv[1]))", "{prompt}"]}
tasks:
  - {id: nap, capability: waiting, prompt: "SECONDS"}
"""  # noqa: E501

FAILING = """\
name: failing
agents:
  - name: worker
    capabilities: {python: 0.9}
    runner: {type: command, argv: ["python3", "-c", "import sys; sys.stderr.write('boom at ' + sys.argv[1] + '\\\\n'); sys.exit(3)", "{task_id}"]}
tasks:
  - {id: build, capability: python, prompt: "x", max_attempts: 1}
  - {id: ship, capability: python, prompt: "y", depends_on: [build]}
"""  # noqa: E501


def sleeper(seconds: float) -> str:
    return SLEEPER.replace("SECONDS", str(seconds))


def doc(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful result."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> dict[str, Any]:
    """The structured error of a failed result."""
    assert result.is_error, result.structured_content
    assert result.structured_content is not None
    err: dict[str, Any] = result.structured_content["error"]
    return err
