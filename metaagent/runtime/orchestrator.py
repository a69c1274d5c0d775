"""The ``Orchestrator``: the thin asyncio shell that carries out the scheduler's decisions.

All decisions come from the pure ``Scheduler``. This module only starts attempts, enforces
timeouts, runs checks, feeds outcomes back and tells subscribers what happened.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from metaagent import crashpoints
from metaagent.agents.base import AttemptContext
from metaagent.agents.function import FunctionRunner
from metaagent.backends.supervisor import LongLivedRunner, Supervisor
from metaagent.clock import Clock, SystemClock
from metaagent.core.decisions import (
    CancelTask,
    Decision,
    DecomposeTask,
    FailTask,
    Output,
    RetryTask,
    RouteTask,
    RunCompleted,
    SkipTask,
    SpawnAgent,
    TaskCompleted,
    TerminateAgent,
)
from metaagent.core.scheduler.scheduler import Scheduler
from metaagent.core.tasks import AgentTask, Outcome, TaskResult, TaskState
from metaagent.errors import AgentCrash, RunFailed, VerificationFailed, WorkflowError
from metaagent.gcpause import Freeze, paused_gc
from metaagent.journal.base import JournalError
from metaagent.report.batch import BatchResult, aggregate
from metaagent.runtime.config import OrchestratorConfig
from metaagent.runtime.events import Event
from metaagent.runtime.handle import EventCallback, RunHandle
from metaagent.runtime.verify import verify_output

__all__ = ["EventCallback", "Orchestrator", "OrchestratorConfig", "RunHandle"]

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from metaagent.core.scheduler.records import RunRecord
    from metaagent.core.specs import AgentSpec
    from metaagent.journal.base import DeferredPart, Journal


class Orchestrator:
    """Runs batches of tasks in parallel on a pool of agents.

    Use as ``async with Orchestrator(agents) as orch:``; the context closes every attempt still
    running when it exits. ``execute_batch`` and friends also work without it.
    """

    def __init__(
        self,
        agents: Sequence[AgentSpec] = (),
        config: OrchestratorConfig | None = None,
        *,
        clock: Clock | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.config = config or OrchestratorConfig()
        self.clock = clock or SystemClock()
        self.scheduler = Scheduler(self.config.scheduler_config())
        self.journal = journal
        now = self.clock.now()
        self._spawns: list[SpawnAgent] = []
        for spec in agents:
            for d in self.scheduler.add_spec(spec, now):
                assert isinstance(d, SpawnAgent)
                self._spawns.append(d)
        self._supervisor: Supervisor | None = None
        self._early: list[Decision] = []  # pool decisions made while no run was going
        if journal is not None:
            # What earlier runs learned about the agents feeds this run's routing.
            for spec_name, cap, arm in journal.load_stats():
                self.scheduler.learning.load(spec_name, cap, arm)
        self._handles: dict[str, RunHandle] = {}
        self._loop: asyncio.AbstractEventLoop  # the loop of the runs: set when one starts
        self._launches: list[RouteTask] = []
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._dispatch_pending = False
        self._closed = False
        self._failure: JournalError | None = None
        self._unread: list[tuple[str, DeferredPart]] = []  # lazily resumed runs' settled tasks
        self._frozen = Freeze()  # resumed runs' records, kept out of the collector's passes

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every attempt still running, then every agent instance; wait until all are gone."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        if self._unread and self._failure is None:
            self._read_rest(closing=True)  # so that partial results name every task
        for h in self._handles.values():
            if not h.done():
                # Whoever awaits result() must not wait forever for work that will not run.
                partial = self.batch_result(h.run_id)
                h._finish(
                    RunFailed(
                        f"the orchestrator was closed before run {h.run_id!r} finished",
                        result=partial,
                    )
                )
        if self._supervisor is not None:
            await self._supervisor.aclose(list(self.scheduler.agents.values()))
        if self.journal is not None and self._failure is None:
            self._commit()
        self._frozen.release()

    # --- the API of the requirements ---------------------------------------------------------

    async def submit(
        self,
        tasks: Sequence[AgentTask],
        *,
        name: str | None = None,
        run_id: str | None = None,
        key: str | None = None,
        on_event: EventCallback | None = None,
        where: str | None = None,
        source: str | None = None,
    ) -> RunHandle:
        """Validate and accept a batch and start it; if it is invalid, raise and accept nothing.

        With a journal, the run is recorded before this returns. ``key`` names the batch (for
        example a hash of a workflow file): if the journal holds an unfinished run with that
        key, that run is resumed instead. Tasks carrying idempotency keys that the journal
        already holds are not submitted again: the run that holds them is returned.
        """
        if self._closed:
            raise RuntimeError("this orchestrator is closed") from self._failure
        journal = self.journal
        if journal is not None:
            known = self._known_run(tasks, key)
            if known is not None:
                if known in self._handles:
                    return self._handles[known]
                return await self.resume(known, on_event=on_event)
        rid = run_id or f"run-{uuid.uuid4().hex[:10]}"
        now = self.clock.now()
        sched = self.scheduler
        with paused_gc():  # one bulk build of records: no collector passes in the middle of it
            run = sched.prepare(rid, tasks, now, name=name, where=where)
        if journal is not None:
            journal.open_run(
                rid, run.name, tasks, key=key, source=source, workdir=self.config.workdir
            )
        return self._start_run(run, now, on_event)

    def _known_run(self, tasks: Sequence[AgentTask], key: str | None) -> str | None:
        journal = self.journal
        assert journal is not None
        if key is not None:
            found = journal.find_unfinished(key)
            if found is not None:
                return found
        keyed = [t.key for t in tasks if t.key is not None]
        if not keyed:
            return None
        holders = {journal.find_task(k) for k in keyed}
        runs = {h[0] for h in holders if h is not None}
        if not runs:
            return None
        if len(runs) == 1 and None not in holders and len(keyed) == len(tasks):
            return runs.pop()
        raise WorkflowError(
            "some idempotency keys of this batch are already journaled (in run "
            + ", ".join(sorted(runs))
            + ") and some are not: resubmit the same batch, or use new keys"
        )

    async def resume(self, run_id: str, *, on_event: EventCallback | None = None) -> RunHandle:
        """Resume a journaled run: finished tasks keep their results (and feed dependents);
        attempts that were in flight are routed again."""
        if self.journal is None:
            raise RuntimeError("resume needs a journal")
        if run_id in self._handles:
            return self._handles[run_id]
        # Rebuilding a large run makes objects by the hundred thousand, none of them cyclic:
        # the collector would walk them over and over for nothing.
        with paused_gc():
            # Lazily: the tasks that succeeded (outside decompositions) are read back after
            # the first dispatch turn, so work starts again without waiting for them.
            stored = self.journal.load_run(run_id, decisions=False, lazy=True)
            part = stored.deferred
            now = self.clock.now()
            run = self.scheduler.restore(
                run_id,
                stored.tasks,
                now,
                name=stored.info.name,
                results=stored.results,
                attempts=stored.attempts,
                settled=None if part is None else part.outputs,
                order=None if part is None else part.order,
                last_at=None if part is None else part.last_at,
            )
            for tid, seen in stored.attempts.items():
                for a in seen:
                    if a.outcome is Outcome.LOST:
                        self.journal.attempt_finished(run_id, tid, a)
            handle = self._start_run(run, now, on_event)
            if part is not None:
                self._unread.append((run_id, part))
            if run.finished_at is None:
                self._frozen.hold(run_id)
            return handle

    def _read_rest(self, *, closing: bool = False) -> None:
        """Read back the settled tasks of runs resumed lazily, now that work is under way (or
        the orchestrator is closing and reports what it has)."""
        pending, self._unread = self._unread, []
        journal = self.journal
        if not pending:
            return
        for run_id, part in pending:
            if (self._closed and not closing) or journal is None:
                return
            try:
                with paused_gc():
                    rest = part.read()
                    outs = self.scheduler.restore_rest(
                        run_id,
                        rest.tasks,
                        self.clock.now(),
                        results=rest.results,
                        attempts=rest.attempts,
                    )
                    if self.scheduler.runs[run_id].finished_at is None:
                        self._frozen.hold(run_id)  # the settled records join the others
            except JournalError as exc:
                self._journal_failed(exc)
                return
            self._apply(outs)
        if not closing:
            self._schedule_dispatch()

    def _start_run(self, run: RunRecord, now: float, on_event: EventCallback | None) -> RunHandle:
        self._loop = asyncio.get_running_loop()
        self._start_agents()
        handle = RunHandle(self, run.id, run.name, run.started_at)
        if on_event is not None:
            handle.on_event(on_event)
        self._handles[run.id] = handle
        early, self._early = self._early, []
        for d in early:
            handle.decisions.append(d)
            if self.journal is not None:
                self.journal.decision(run.id, d, d.at - handle.started_at)
        with paused_gc():  # every root task is queued at once
            self._apply(self.scheduler.accept(run, now))
        # Dispatch on the next loop turn, so a caller can subscribe to events() first.
        self._schedule_dispatch()
        return handle

    async def execute_batch(
        self, tasks: Sequence[AgentTask], *, name: str | None = None
    ) -> BatchResult:
        """Run a batch to completion, in parallel where dependencies allow."""
        handle = await self.submit(tasks, name=name)
        return await handle.result()

    async def execute_concurrent(self, task: AgentTask) -> TaskResult:
        """Run one task alongside whatever else is running; return its result.

        Raises ``RunFailed`` (carrying the result) if it did not succeed.
        """
        batch = await self.execute_batch([task], name=task.id)
        result = batch.results[0]
        if not result.ok:
            raise RunFailed(
                f"task {task.id!r} ended {result.state.value}: {result.error}", result=result
            )
        return result

    @staticmethod
    def aggregate_results(results: Sequence[TaskResult]) -> BatchResult:
        """Merge task results into one ``BatchResult`` with its figures."""
        return aggregate(results)

    async def cancel(self, run_id: str, task_ids: Iterable[str] | None = None) -> None:
        """Cancel tasks of a run (all open ones by default); running attempts are stopped."""
        self._apply(self.scheduler.cancel(run_id, task_ids, self.clock.now()))
        self._schedule_dispatch()

    def task_states(self, run_id: str) -> dict[str, TaskState]:
        """Every task of a run with its state now (a resumed run's finished tasks included)."""
        run = self.scheduler.runs[run_id]
        if run.unread is not None:  # a lazy resume: the settled tasks are known by id so far
            done, records = TaskState.SUCCEEDED, run.tasks
            states = {
                tid: records[tid].state if tid in records else done for tid in run.unread.order
            }
            states.update((tid, rec.state) for tid, rec in records.items())
            return states
        return {tid: rec.state for tid, rec in run.tasks.items()}

    def waiting(self) -> dict[str, str]:
        """Capabilities whose queued tasks no live agent can serve now, with the reason."""
        return self.scheduler.waiting_reasons()

    def batch_result(self, run_id: str) -> BatchResult:
        handle = self._handles[run_id]
        sched = self.scheduler
        run = sched.runs[run_id]
        end = run.finished_at if run.finished_at is not None else self.clock.now()
        offered, slots = sched.pool.capacity(handle.started_at, end)
        with paused_gc():  # a result per task, built in one go
            return aggregate(
                sched.results(run_id),
                slots=self.config.max_concurrency,
                name=handle.name,
                run_id=run_id,
                decisions=handle.decisions,
                started_at=handle.started_at,
                agent_slots=slots,
                capacity=offered,
            )

    def forget(self, run_id: str) -> None:
        """Drop a finished run from memory (a journal keeps its record), so that a long-lived
        orchestrator's memory does not grow with the runs it served. Take its
        ``batch_result`` first. Raises ``WorkflowError`` while the run has open tasks."""
        self.scheduler.forget(run_id)
        self._handles.pop(run_id, None)

    # --- agent instances ----------------------------------------------------------------------

    def _start_agents(self) -> None:
        """Create the supervisor (needs a running loop) and start the initial instances."""
        if self._supervisor is None:
            self._supervisor = Supervisor(
                self.config.health,
                self.clock,
                self.config.workdir,
                on_ready=self._agent_ready,
                on_lost=self._agent_lost,
                on_stopped=self._agent_stopped,
            )
            spawns, self._spawns = self._spawns, []
            self._apply(list(spawns))

    def _agent_ready(self, iid: str) -> None:
        self.scheduler.agent_ready(iid, self.clock.now())
        self._schedule_dispatch()

    def _agent_stopped(self, iid: str) -> None:
        self.scheduler.agent_stopped(iid, self.clock.now())

    def _agent_lost(self, iid: str, reason: str) -> None:
        if self._closed:
            return
        self._apply(self.scheduler.agent_lost(iid, self.clock.now(), reason))
        self._schedule_dispatch()

    def _pool_decision(self, d: Decision) -> None:
        """Carry out a pool decision; it belongs to every run still going (or the next one)."""
        active = [h for h in self._handles.values() if not h.done()]
        if not active:
            self._early.append(d)
        for h in active:
            h.decisions.append(d)
            if self.journal is not None:
                self.journal.decision(h.run_id, d, d.at - h.started_at)
            if h.listening:
                h.publish(Event("decision", d.at - h.started_at, h.run_id, None, None,
                                d.agent, d.reason, d))  # fmt: skip
        sup = self._supervisor
        if sup is None:
            return
        if isinstance(d, SpawnAgent):
            inst = self.scheduler.agents.get(d.instance)
            if inst is not None and sup.spawn(inst):
                self.scheduler.agent_ready(d.instance, d.at)
        elif isinstance(d, TerminateAgent):
            inst = self.scheduler.agents.get(d.instance)
            if inst is None and d.lost:
                # Already gone from the pool: make sure its process is gone too.
                spec_runner = self._runner_of(d.spec)
                if isinstance(spec_runner, LongLivedRunner):
                    spec_runner.kill(d.instance, d.reason)
            elif inst is not None:
                sup.terminate(inst, lost=d.lost)

    def _runner_of(self, spec: str) -> object:
        pool = self.scheduler.pool.specs.get(spec)
        return None if pool is None else pool.spec.runner

    # --- carrying out decisions ---------------------------------------------------------------

    def _apply(self, outs: Sequence[Output]) -> None:
        """Record outputs (journal, decision log, events); queue routed attempts for launch."""
        handles = self._handles
        journal = self.journal
        sched = self.scheduler
        for o in outs:
            kind = type(o)
            if kind is RouteTask:
                assert isinstance(o, RouteTask)
                h = handles[o.run_id]  # type: ignore[index]
                h.decisions.append(o)
                if journal is not None:
                    tid = o.task_id or ""
                    rec = sched.runs[h.run_id].tasks[tid]
                    journal.attempt_started(h.run_id, tid, rec.attempts[-1])
                    journal.decision(h.run_id, o, o.at - h.started_at)
                if h._listening:
                    h.publish(
                        Event("task", o.at - h.started_at, h.run_id, o.task_id, "running",
                              o.spec, o.reason, o)
                    )  # fmt: skip
                if journal is None:
                    self._launch(o)  # nothing to make durable first
                else:
                    self._launches.append(o)
                continue
            if kind is TaskCompleted:
                assert isinstance(o, TaskCompleted)
                h = handles[o.run_id]
                if journal is None and not h._listening:
                    continue
                rec = sched.runs[o.run_id].tasks[o.task_id]
                if journal is not None:
                    journal.task_finished(
                        o.run_id, o.task_id, rec.state, rec.output, None, o.at - h.started_at
                    )
                if h._listening:
                    agent = rec.attempts[-1].agent if rec.attempts else None
                    h.publish(
                        Event("task", o.at - h.started_at, o.run_id, o.task_id, "succeeded", agent)
                    )
                continue
            if kind is RunCompleted:
                assert isinstance(o, RunCompleted)
                h = handles[o.run_id]
                if journal is not None:
                    journal.run_finished(o.run_id)
                    if not self._commit():
                        continue
                if h.listening:
                    h.publish(Event("run", o.at - h.started_at, o.run_id))
                h._finish()
                self._frozen.release(o.run_id)
                continue
            assert isinstance(o, Decision)
            if o.run_id is None:
                self._pool_decision(o)
                continue
            owner = handles.get(o.run_id)
            if journal is not None and kind is DecomposeTask:
                assert isinstance(o, DecomposeTask)
                subs = sched.runs[o.run_id].tasks
                journal.add_tasks(o.run_id, [subs[c].task for c in o.subtasks])
            if owner is not None:
                owner.decisions.append(o)
                if journal is not None:
                    journal.decision(owner.run_id, o, o.at - owner.started_at)
                    if isinstance(o, (FailTask, SkipTask, CancelTask)) and o.task_id is not None:
                        rec = sched.runs[owner.run_id].tasks[o.task_id]
                        journal.task_finished(
                            owner.run_id, o.task_id, rec.state, None, rec.error,
                            o.at - owner.started_at,
                        )  # fmt: skip
                if owner.listening:
                    owner.publish(self._decision_event(owner, o))
            if kind is CancelTask:
                assert isinstance(o, CancelTask)
                task = self._inflight.pop((o.run_id or "", o.task_id or ""), None)
                if task is not None:
                    task.cancel()
                if o.was_running and journal is not None and owner is not None:
                    rec = sched.runs[owner.run_id].tasks[o.task_id or ""]
                    journal.attempt_finished(
                        owner.run_id,
                        rec.task.id,
                        rec.attempts[-1],
                    )

    def _commit(self) -> bool:
        """Make journaled records durable (one transaction) and persist learned statistics.

        If the journal cannot be written, nothing more may run unrecorded: every open run fails
        with the journal's error and this returns False.
        """
        journal = self.journal
        if journal is None:
            return True
        if self._failure is not None:
            return False
        learning = self.scheduler.learning
        dirty = learning.drain_dirty()
        if dirty:
            journal.save_stats((s, c, learning.arms[(s, c)]) for s, c in dirty)
        try:
            journal.flush()
        except JournalError as exc:
            self._journal_failed(exc)
            return False
        return True

    def _journal_failed(self, exc: JournalError) -> None:
        self._failure = exc
        self._closed = True
        self._launches.clear()
        if self._timer is not None:
            self._timer.cancel()
        for task in self._inflight.values():
            task.cancel()
        for h in self._handles.values():
            h._finish(exc)
        self._frozen.release()

    @staticmethod
    def _decision_event(h: RunHandle, d: Decision) -> Event:
        at = d.at - h.started_at
        if isinstance(d, RetryTask):
            return Event("task", at, h.run_id, d.task_id, "retrying", d.failed_agent, d.reason, d)
        if isinstance(d, SkipTask):
            return Event("task", at, h.run_id, d.task_id, "skipped", None, d.reason, d)
        if isinstance(d, CancelTask):
            return Event("task", at, h.run_id, d.task_id, "cancelled", None, d.reason, d)
        if d.type == "fail_task":
            return Event("task", at, h.run_id, d.task_id, "failed", None, d.reason, d)
        return Event("decision", at, h.run_id, d.task_id, None, d.agent, d.reason, d)

    def _launch(self, d: RouteTask) -> None:
        sched = self.scheduler
        run = sched.runs[d.run_id]  # type: ignore[index]
        rec = run.tasks[d.task_id]  # type: ignore[index]
        if rec.state is not TaskState.RUNNING or rec.attempt != d.attempt:
            return  # cancelled between the decision and its launch
        task = rec.task
        inst = sched.agents[d.instance]
        upstream = {dep: run.output_of(dep) for dep in task.depends_on}
        ctx = AttemptContext(
            task, run.id, d.attempt, d.spec, d.instance, upstream, self.config.workdir,
            rec.feedback,
        )  # fmt: skip
        timeout = task.timeout_s if task.timeout_s is not None else self.config.default_timeout_s
        coro = self._attempt(ctx, inst.spec.runner, timeout)
        self._inflight[(run.id, task.id)] = self._loop.create_task(coro)

    async def _attempt(self, ctx: AttemptContext, runner: object, limit_s: float | None) -> None:
        task = ctx.task
        output: object = None
        error: str | None = None
        outcome = Outcome.SUCCEEDED
        run = getattr(runner, "run")  # noqa: B009 - the Runner protocol, looked up once
        if type(runner) is FunctionRunner and runner.is_async:
            run = runner.fn  # call the coroutine function itself: one frame less per attempt
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
                await verify_output(task.verify, task, output, self.config.workdir)
        except asyncio.CancelledError:
            # Cancelled by cancel() or shutdown: the scheduler already recorded the outcome.
            raise
        except VerificationFailed as exc:
            outcome, error = Outcome.VERIFY_FAILED, str(exc)
        except AgentCrash as exc:
            outcome, error = Outcome.CRASH, str(exc)
        except Exception as exc:
            outcome, error = Outcome.ERROR, f"{type(exc).__name__}: {exc}"
        key = (ctx.run_id, task.id)
        if self._inflight.get(key) is asyncio.current_task():
            del self._inflight[key]
        try:
            self._finished(ctx, outcome, output, error)
        except Exception as exc:
            # A failure of the bookkeeping itself (a bug): fail every waiting run loudly
            # rather than leave it hanging.
            failure = RuntimeError(f"the orchestrator failed while finishing an attempt: {exc!r}")
            for h in self._handles.values():
                h._finish(failure)
            raise

    def _finished(
        self, ctx: AttemptContext, outcome: Outcome, output: object, error: str | None
    ) -> None:
        task = ctx.task
        sched = self.scheduler
        outs = sched.finish(
            ctx.run_id,
            task.id,
            ctx.attempt,
            outcome,
            self.clock.now(),
            output=output if outcome is Outcome.SUCCEEDED else None,
            error=error,
        )
        journal = self.journal
        if outs and journal is not None:
            rec = sched.runs[ctx.run_id].tasks[task.id]
            ended = next(a for a in reversed(rec.attempts) if a.number == ctx.attempt)
            journal.attempt_finished(ctx.run_id, task.id, ended)
        self._apply(outs)
        crashpoints.hit("after_result_before_commit")
        # One dispatch per loop turn serves every attempt that finished in it.
        self._schedule_dispatch()

    def _schedule_dispatch(self) -> None:
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self._loop.call_soon(self._dispatch_now)

    def _dispatch_now(self) -> None:
        """One dispatch turn: route what can run, commit the journal, then start attempts."""
        self._dispatch_pending = False
        if self._closed:
            return
        with paused_gc():  # a turn builds a burst of records: collect after it, not during
            self._apply(self.scheduler.tick(self.clock.now()))
            if self.journal is not None and not self._commit():
                return
        if self.journal is not None:
            crashpoints.hit("after_commit_before_dispatch")
        launches, self._launches = self._launches, []
        for d in launches:
            self._launch(d)
        self._arm_timer()
        if self._unread:
            # After the attempts just launched have taken their first step.
            self._loop.call_soon(self._read_rest)

    def _arm_timer(self) -> None:
        wake = self.scheduler.next_wakeup()
        if wake is None or (self._timer_at is not None and self._timer_at <= wake):
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, wake - self.clock.now())
        self._timer_at = wake
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._dispatch_now()
