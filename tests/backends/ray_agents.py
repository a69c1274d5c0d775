"""Agent functions the Ray tests run inside actors (workers import this module by name)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext


def where(ctx: AttemptContext) -> dict[str, object]:
    """Which process and node ran the attempt."""
    import ray

    return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "id": ctx.task.id}


async def echo(ctx: AttemptContext) -> object:
    await asyncio.sleep(0)
    return {"id": ctx.task.id, "upstream": dict(ctx.upstream), "input": ctx.task.input}


def noop(ctx: AttemptContext) -> None:
    return None


def gated(ctx: AttemptContext) -> str:
    """Log the attempt's start and end to ``input["log"]``; tasks from ``input["gate_from"]``
    on wait for the file ``input["gate"]`` before they finish."""
    spec = ctx.task.input
    assert isinstance(spec, dict)
    log = Path(spec["log"])
    line = f"{ctx.task.id} {ctx.attempt} {ctx.instance} {os.getpid()}"
    with log.open("a") as fh:
        fh.write(f"start {line}\n")
    if spec["index"] >= spec["gate_from"]:
        while not Path(spec["gate"]).exists():
            time.sleep(0.02)
    time.sleep(0.01)
    with log.open("a") as fh:
        fh.write(f"done {line}\n")
    return ctx.task.id


async def nap(ctx: AttemptContext) -> str:
    """Work for ``input`` seconds."""
    seconds = ctx.task.input
    assert isinstance(seconds, int | float)
    await asyncio.sleep(seconds)
    return ctx.instance
