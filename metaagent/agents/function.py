"""Agents that are Python callables: coroutine functions run on the loop, plain ones in threads of
a bounded pool (never the loop's shared default executor)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from metaagent.agents.base import AttemptContext

AgentFunction = Callable[[AttemptContext], object] | Callable[[AttemptContext], Awaitable[object]]


def thread_pool(name: str, max_threads: int) -> ThreadPoolExecutor:
    """A pool of at most ``max_threads`` threads for the sync function agents called ``name``.

    Threads cannot be killed: ``shutdown(wait=False, cancel_futures=True)`` drops the calls that
    have not started, but a thread that is running goes on until its function returns, and
    Python joins the pool's threads when the interpreter exits.
    """
    if max_threads < 1:
        raise ValueError(f"max_threads must be at least 1, got {max_threads}")
    return ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=f"metaagent-{name}")


def _call_in(
    cv: contextvars.Context, fn: Callable[[AttemptContext], object], ctx: AttemptContext
) -> object:
    return cv.run(fn, ctx)


class FunctionRunner:
    """Calls ``fn(ctx)``. A sync function runs in a worker thread so it cannot block the loop.

    The local backend runs a sync function in a pool of its agent spec (as many threads as the
    spec has slots over all its instances, see ``LocalBackend``), so hung calls of one spec
    cannot starve another spec or the runtime. Called directly, ``run`` uses this runner's own
    pool of ``max_threads`` threads, made at the first call and shut down by ``close``.

    An exception from ``fn`` fails the attempt with that exception's text.
    """

    kind = "function"

    __slots__ = ("_pool", "fn", "is_async", "max_threads", "name")

    def __init__(self, fn: AgentFunction, *, name: str | None = None, max_threads: int = 4) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionRunner needs a callable, got {type(fn).__name__}")
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.fn = fn
        self.name = name or str(getattr(fn, "__qualname__", repr(fn)))
        self.max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )

    async def run(self, ctx: AttemptContext) -> object:
        if self.is_async:
            return await cast("Callable[[AttemptContext], Awaitable[object]]", self.fn)(ctx)
        # Cancelling the wait drops a call not yet started; a running thread goes on.
        return await asyncio.wrap_future(self.start(ctx))

    def start(self, ctx: AttemptContext, pool: ThreadPoolExecutor | None = None) -> Future[object]:
        """Start a sync ``fn(ctx)`` in a thread of ``pool`` (None: this runner's own pool).

        ``cancel()`` on the future keeps a call still queued from running (and says so); a call
        a thread has taken up cannot be stopped.
        """
        if self.is_async:
            raise TypeError(f"{self.name} is a coroutine function: await run(ctx) instead")
        if pool is None:
            pool = self._pool
            if pool is None:
                pool = self._pool = thread_pool(self.name, self.max_threads)
        # As asyncio.to_thread does: the function sees the caller's context variables.
        return pool.submit(_call_in, contextvars.copy_context(), self.fn, ctx)

    def close(self) -> None:
        """Shut this runner's own pool down without waiting: calls not started are dropped, and
        a running thread goes on until its function returns (threads cannot be killed)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> dict[str, object]:
        return {"type": self.kind, "function": self.name}
