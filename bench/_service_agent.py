"""The agents of ``python -m bench service`` (imported by the server it starts)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext


async def noop(_: object) -> None:
    """The work: none; what is measured is the service around it."""
    return None


async def pause(ctx: AttemptContext) -> None:
    """Waits its task's ``input`` seconds: paces how fast a run makes events."""
    await asyncio.sleep(float(ctx.task.input))  # type: ignore[arg-type]
