"""The attempts running now: started on the backend, stopped on a cancel or at close, and
reported back to the orchestrator when they end."""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import TYPE_CHECKING

from metaagent.agents.base import AttemptContext
from metaagent.core.tasks import Outcome, TaskState
from metaagent.runtime.budget import BudgetGuard
from metaagent.runtime.verify import verify_output

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from metaagent.backends.base import Backend
    from metaagent.core.decisions import RouteTask
    from metaagent.core.scheduler.scheduler import Scheduler
    from metaagent.core.tasks import AgentTask
    from metaagent.runtime.config import OrchestratorConfig


class Attempts:
    """Every attempt in flight, by (run, task, attempt); each is one asyncio task of the run's
    loop.

    ``on_end(ctx, outcome, output, error)`` hears how each attempt ended, once, unless it was
    stopped here (whoever stopped it already recorded the outcome); if it raises (a bug in the
    bookkeeping), ``on_bug(exc)`` is told before the error propagates. It is the backends'
    ``AttemptReport``.

    A stopped attempt may take a while to stop (a process being killed and reaped, a sync
    function's thread that cannot be interrupted, a coroutine that cleans up): it is kept among
    ``stopping`` until its asyncio task is done, then ``on_stopped(run, task, attempt)`` is told,
    so that the scheduler frees its slot and resources only then.
    """

    __slots__ = (
        "_backend",
        "_config",
        "_loop",
        "_on_bug",
        "_on_end",
        "_running",
        "_scheduler",
        "_unbudgeted",
        "budget",
        "on_stopped",
        "stopping",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        backend: Backend,
        config: OrchestratorConfig,
        on_end: Callable[[AttemptContext, Outcome, object, str | None], None],
        on_bug: Callable[[Exception], None],
    ) -> None:
        self._scheduler = scheduler
        self._backend = backend
        self._config = config
        self._on_end = on_end
        self._on_bug = on_bug
        self._running: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        self.on_stopped: Callable[[str, str, int], None] = _nobody
        self.budget = BudgetGuard(scheduler, config.budget, config.pricing)
        self._unbudgeted = config.budget.empty  # no refusal to check for

    def __len__(self) -> int:
        return len(self._running)

    def start(self, d: RouteTask) -> None:
        """Start the attempt a ``route_task`` decision made, unless the task was cancelled
        since; it gets the outputs of its dependencies and the task's time limit."""
        sched = self._scheduler
        run = sched.runs[d.run_id]  # type: ignore[index]
        rec = run.tasks[d.task_id]  # type: ignore[index]
        if rec.state is not TaskState.RUNNING or rec.attempt != d.attempt:
            return  # cancelled between the decision and its launch
        task = rec.task
        cfg = self._config
        deps = task.depends_on
        upstream = {dep: run.output_of(dep) for dep in deps} if deps else _NO_UPSTREAM
        ctx = AttemptContext(
            task, run.id, d.attempt, d.spec, d.instance, upstream, cfg.workdir, rec.feedback
        )
        limit_s = task.timeout_s if task.timeout_s is not None else cfg.default_timeout_s
        runner = sched.agents[d.instance].spec.runner
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if not self._unbudgeted:
            refused = self.budget.refusal(run.id, task.id, d.spec)
            if refused is not None:  # never started: it ends at once, failed for good
                loop.call_soon(self._refused, ctx, refused)
                return
        coro = self._backend.attempt(ctx, runner, limit_s, self)
        self._running[(ctx.run_id, task.id, d.attempt)] = loop.create_task(coro)

    async def check(self, task: AgentTask, output: object) -> None:
        assert task.verify is not None
        await verify_output(task.verify, task, output, self._config.workdir)

    def ended(
        self, ctx: AttemptContext, outcome: Outcome, output: object, error: str | None
    ) -> None:
        self._running.pop((ctx.run_id, ctx.task.id, ctx.attempt), None)
        usage = ctx.usage
        if usage is not None:
            usage = ctx.usage = self.budget.priced(usage, ctx.agent)
        if (ctx.log is not None or usage is not None) and self._keep_log(ctx) and usage:
            self.budget.charge(ctx.run_id, ctx.task.id, ctx.agent, usage)
        try:
            self._on_end(ctx, outcome, output, error)
        except Exception as exc:
            self._on_bug(
                RuntimeError(f"the orchestrator failed while finishing an attempt: {exc!r}")
            )
            raise

    def _refused(self, ctx: AttemptContext, reason: str) -> None:
        try:
            self._on_end(ctx, Outcome.BUDGET_EXCEEDED, None, reason)
        except Exception as exc:
            self._on_bug(
                RuntimeError(f"the orchestrator failed while refusing an attempt: {exc!r}")
            )
            raise

    def _keep_log(self, ctx: AttemptContext) -> bool:
        """Put the runner's log and usage on the attempt's record, before its end is recorded;
        False when the attempt has no record any more."""
        run = self._scheduler.runs.get(ctx.run_id)
        rec = None if run is None else run.tasks.get(ctx.task.id)
        if rec is None:
            return False
        for a in reversed(rec.attempts):
            if a.number == ctx.attempt:
                a.log = ctx.log
                a.usage = ctx.usage
                return True
        return False

    def stop(self, run_id: str, task_id: str, attempt: int) -> None:
        """Stop attempt ``attempt`` of a task (its outcome is already recorded); once its work
        has stopped (at once if it never started), ``on_stopped`` is told."""
        key = (run_id, task_id, attempt)
        task = self._running.pop(key, None)
        if task is None or task.done():
            if attempt:
                asyncio.get_running_loop().call_soon(self.on_stopped, *key)
            return
        self.stopping[key] = task
        task.add_done_callback(lambda _: self._stopped(key))
        task.cancel()

    def _stopped(self, key: tuple[str, str, int]) -> None:
        if self.stopping.pop(key, None) is not None:
            self.on_stopped(*key)

    def stop_all(self) -> None:
        """Stop every attempt at once, without waiting."""
        for task in self._running.values():
            task.cancel()

    async def aclose(self) -> None:
        """Stop every attempt and wait until each has stopped (runners kill their processes).
        Attempts already stopping are told a second time: a sync function's thread, which
        cannot be interrupted, is then no longer waited for (it runs on; see the backend)."""
        tasks = [*self._running.values(), *self.stopping.values()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        self.stopping.clear()


_NO_UPSTREAM: Mapping[str, object] = MappingProxyType({})  # a task without dependencies


def _nobody(run_id: str, task_id: str, attempt: int) -> None:
    """The default ``on_stopped``: nobody to tell."""
