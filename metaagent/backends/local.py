"""The local backend: attempts run as asyncio tasks of this process (functions on the loop or in
threads, commands as child processes); long-lived instances are supervised here."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from metaagent.agents.function import FunctionRunner
from metaagent.backends.supervisor import LongLivedRunner, Supervisor
from metaagent.core.tasks import Outcome
from metaagent.errors import AgentCrash, VerificationFailed

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext, Runner
    from metaagent.backends.base import AttemptReport, InstanceHooks
    from metaagent.clock import Clock
    from metaagent.core.health import HealthPolicy
    from metaagent.core.instances import AgentInstance


class LocalBackend:
    """Runs every attempt in this process's event loop; one ``Supervisor`` for instances."""

    name = "local"

    __slots__ = ("_supervisor",)

    def __init__(
        self, health: HealthPolicy, clock: Clock, workdir: str, hooks: InstanceHooks
    ) -> None:
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
        if type(runner) is FunctionRunner and runner.is_async:
            run = runner.fn  # type: ignore[assignment]  # the coroutine function: a frame less
        try:
            if limit_s is None:
                output = await run(ctx)
            else:
                try:
                    async with asyncio.timeout(limit_s) as scope:
                        output = await run(ctx)
                except TimeoutError:
                    if not scope.expired():
                        raise
                    outcome = Outcome.TIMEOUT
                    error = f"timed out after {limit_s:g}s; the attempt was stopped"
            if outcome is Outcome.SUCCEEDED and task.verify is not None:
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

    def spawn(self, inst: AgentInstance) -> bool:
        return self._supervisor.spawn(inst)

    def terminate(self, inst: AgentInstance, *, lost: bool) -> None:
        self._supervisor.terminate(inst, lost=lost)

    def kill(self, runner: Runner, instance: str, reason: str) -> None:
        if isinstance(runner, LongLivedRunner):
            runner.kill(instance, reason)

    async def aclose(self, instances: list[AgentInstance]) -> None:
        await self._supervisor.aclose(instances)
