"""Agents for the service's tests, named by the workflows they submit
(``function: "service_agents:quick"``; the test server runs with this folder on its path)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext


async def quick(ctx: AttemptContext) -> str:
    """Answers at once with its task's id."""
    return ctx.task.id


async def slow(ctx: AttemptContext) -> str:
    """Sleeps for its task's ``input`` seconds (default 30), then answers."""
    await asyncio.sleep(float(ctx.task.input or 30))  # type: ignore[arg-type]
    return ctx.task.id


async def failing(ctx: AttemptContext) -> str:
    """Always fails."""
    raise RuntimeError(f"task {ctx.task.id} fails on purpose")
