"""Agents that are Python callables: coroutine functions run on the loop, plain ones in threads."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import cast

from metaagent.agents.base import AttemptContext

AgentFunction = Callable[[AttemptContext], object] | Callable[[AttemptContext], Awaitable[object]]


class FunctionRunner:
    """Calls ``fn(ctx)``. A sync function runs in a worker thread so it cannot block the loop.

    An exception from ``fn`` fails the attempt with that exception's text.
    """

    kind = "function"

    __slots__ = ("fn", "is_async", "name")

    def __init__(self, fn: AgentFunction, *, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionRunner needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )

    async def run(self, ctx: AttemptContext) -> object:
        if self.is_async:
            return await cast("Callable[[AttemptContext], Awaitable[object]]", self.fn)(ctx)
        return await asyncio.to_thread(self.fn, ctx)

    def describe(self) -> dict[str, object]:
        return {"type": self.kind, "function": self.name}
