"""The local backend: attempts run as asyncio tasks of this process (functions on the loop or in
threads, commands as child processes); long-lived instances are supervised here."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from metaagent.agents.function import FunctionRunner, thread_pool
from metaagent.backends.deadlines import Deadlines
from metaagent.backends.supervisor import LongLivedRunner, Supervisor
from metaagent.core.tasks import Outcome
from metaagent.errors import AgentCrash, VerificationFailed

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from metaagent.agents.base import AttemptContext, Runner
    from metaagent.backends.base import AttemptReport, InstanceHooks
    from metaagent.clock import Clock
    from metaagent.core.health import HealthPolicy
    from metaagent.core.instances import AgentInstance

_Ended = tuple[Outcome, object, str | None]


def _retrieve(fut: asyncio.Future[object]) -> None:
    # A thread that raises after its attempt timed out: its error is in the attempt's text.
    if not fut.cancelled():
        fut.exception()


class LocalBackend:
    """Runs every attempt in this process's event loop; one ``Supervisor`` for instances.

    Coroutine agents are stopped at their time limit by cancellation, commands by killing their
    process group. A sync function agent runs in a thread of a pool of its spec (made at the
    spec's first spawn, with as many threads as the spec has slots over all its instances:
    ``concurrency * max_instances``), never in the loop's default executor, so hung calls of one
    spec cannot starve another spec or the runtime. A thread cannot be killed: when a sync call
    passes its limit, the attempt waits for the thread to return and only then reports
    ``TIMEOUT``, and a cancelled one ends only when its thread has returned, so the scheduler
    keeps the attempt's slot and exclusive resources until its work has really stopped. The
    pools are shut down by ``aclose``, which does not wait for hung threads (each runs on until
    its function returns; Python joins them at exit).
    """

    name = "local"

    __slots__ = ("_clock", "_deadlines", "_pools", "_supervisor")

    def __init__(
        self, health: HealthPolicy, clock: Clock, workdir: str, hooks: InstanceHooks
    ) -> None:
        self._clock = clock
        self._deadlines = Deadlines()  # the time limits of coroutine and command attempts
        self._pools: dict[str, ThreadPoolExecutor] = {}  # spec name -> its sync functions' pool
        self._supervisor = Supervisor(
            health,
            clock,
            workdir,
            on_ready=hooks.on_ready,
            on_lost=hooks.on_lost,
            on_stopped=hooks.on_stopped,
        )

    async def attempt(
        self,
        ctx: AttemptContext,
        runner: Runner,
        limit_s: float | None,
        report: AttemptReport,
    ) -> None:
        task = ctx.task
        output: object = None
        error: str | None = None
        outcome = Outcome.SUCCEEDED
        run = runner.run
        threaded: FunctionRunner | None = None
        if type(runner) is FunctionRunner:
            if runner.is_async:
                run = runner.fn  # type: ignore[assignment]  # the coroutine function: a frame less
            else:
                threaded = runner
        try:
            if threaded is not None:
                outcome, output, error = await self._in_thread(ctx, threaded, limit_s)
            elif limit_s is None:
                output = await run(ctx)
            else:
                loop = asyncio.get_running_loop()
                this = asyncio.current_task(loop)
                assert this is not None
                limit = self._deadlines.arm(loop, limit_s, this)
                try:
                    output = await run(ctx)
                except asyncio.CancelledError:
                    # Past its limit (and not cancelled from outside as well): a timeout.
                    if not limit.expired or this.uncancel() > 0:
                        raise
                    outcome = Outcome.TIMEOUT
                    error = f"timed out after {limit_s:g}s; the attempt was stopped"
                finally:
                    self._deadlines.disarm(limit)
            if (
                outcome is Outcome.SUCCEEDED
                and task.verify is not None
                and not getattr(runner, "verifies_output", False)  # checked in its worktree
            ):
                await report.check(task, output)
        except asyncio.CancelledError:
            # Cancelled by cancel() or shutdown: the scheduler already recorded the outcome.
            raise
        except VerificationFailed as exc:
            outcome, error = Outcome.VERIFY_FAILED, str(exc)
        except AgentCrash as exc:
            outcome, error = Outcome.CRASH, str(exc)
        except Exception as exc:
            outcome, error = Outcome.ERROR, f"{type(exc).__name__}: {exc}"
        report.ended(ctx, outcome, output, error)

    async def _in_thread(
        self, ctx: AttemptContext, runner: FunctionRunner, limit_s: float | None
    ) -> _Ended:
        """Run a sync function in its spec's pool; past ``limit_s``, wait for its thread.

        A cancel drops a call whose thread has not started; one that is running cannot be
        interrupted, so the attempt waits for its thread before it ends cancelled (a second
        cancel, at close, stops that wait)."""
        call = runner.start(ctx, self._pools.get(ctx.agent))
        fut = asyncio.wrap_future(call)
        fut.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(limit_s) as scope:
                return Outcome.SUCCEEDED, await asyncio.shield(fut), None
        except TimeoutError:
            if not scope.expired():
                raise
        except asyncio.CancelledError:
            this = asyncio.current_task()
            # Running: its slot stays taken until the thread returns, unless this is also the
            # second cancel (at close), which may arrive together with the first.
            if not call.cancel() and this is not None and this.cancelling() < 2:
                await asyncio.wait([fut])
            raise
        assert limit_s is not None  # only a limit expires
        return Outcome.TIMEOUT, None, await self._outwait(ctx, call, fut, limit_s)

    async def _outwait(
        self, ctx: AttemptContext, call: Future[object], fut: asyncio.Future[object], limit_s: float
    ) -> str:
        """Wait until a timed-out call's thread has returned; the text says what happened."""
        if call.cancel():
            return (
                f"timed out after {limit_s:g}s before its thread started: every thread of "
                f"agent {ctx.agent!r} was busy"
            )
        began = self._clock.now()
        # A cancel (of the task, or at close) ends this wait; the thread still cannot be stopped.
        await asyncio.wait([fut])
        ran_on = self._clock.now() - began
        exc = None if fut.cancelled() else fut.exception()
        how = "returned" if exc is None else f"raised {type(exc).__name__}: {exc}"
        return (
            f"timed out after {limit_s:g}s; its thread ran on for {ran_on:.1f}s more and has "
            f"now {how}"
        )

    def spawn(self, inst: AgentInstance) -> bool:
        spec = inst.spec
        runner = spec.runner
        if type(runner) is FunctionRunner and not runner.is_async and spec.name not in self._pools:
            self._pools[spec.name] = thread_pool(spec.name, spec.concurrency * spec.max_instances)
        return self._supervisor.spawn(inst)

    def terminate(self, inst: AgentInstance, *, lost: bool) -> None:
        self._supervisor.terminate(inst, lost=lost)

    def kill(self, runner: Runner, instance: str, reason: str) -> None:
        if isinstance(runner, LongLivedRunner):
            runner.kill(instance, reason)

    async def aclose(self, instances: list[AgentInstance]) -> None:
        """Stop every instance, then shut the thread pools down without waiting for their
        threads: calls not started are dropped; a hung thread cannot be killed and runs on."""
        try:
            await self._supervisor.aclose(instances)
        finally:
            self._deadlines.close()
            pools, self._pools = self._pools, {}
            for pool in pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
