"""The ``Orchestrator``: the thin asyncio shell that carries out the scheduler's decisions.

All decisions come from the pure ``Scheduler``. This module only starts attempts, enforces
timeouts, runs checks, feeds outcomes back and tells subscribers what happened.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from metaagent import crashpoints
from metaagent.backends.base import InstanceHooks, load_backend
from metaagent.clock import Clock, SystemClock
from metaagent.core.decisions import (
    CancelTask,
    Decision,
    DecomposeTask,
    Output,
    RouteTask,
    RunCompleted,
    SpawnAgent,
    TaskCompleted,
)
from metaagent.core.scheduler.scheduler import Scheduler
from metaagent.core.tasks import AgentTask, Outcome, TaskResult, TaskState
from metaagent.errors import RunFailed
from metaagent.gcpause import Freeze, paused_gc
from metaagent.journal.base import JournalError
from metaagent.journal.null import NullJournal
from metaagent.report.batch import BatchResult, aggregate
from metaagent.runtime.attempts import Attempts
from metaagent.runtime.committer import Committer
from metaagent.runtime.config import OrchestratorConfig
from metaagent.runtime.handle import EventCallback, RunHandle
from metaagent.runtime.instances import carry_out
from metaagent.runtime.journaled import durations_of, known_run, read_settled, restore_run
from metaagent.runtime.lease import LeaseKeeper
from metaagent.runtime.results import fail_unfinished, run_result
from metaagent.runtime.sinks import EventSink, JournalSink, Sink, ends_task

__all__ = ["EventCallback", "Orchestrator", "OrchestratorConfig", "RunHandle"]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from metaagent.agents.base import AttemptContext
    from metaagent.core.scheduler.records import RunRecord
    from metaagent.core.specs import AgentSpec
    from metaagent.journal.base import DeferredPart, Journal
    from metaagent.runtime.reaper import Reaped


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
        # Without a journal nothing is recorded: a null journal, so there is no "is there one".
        self.journal: Journal = NullJournal() if journal is None else journal
        now = self._born = self.clock.now()  # runs that started earlier were resumed
        self._spawns: list[SpawnAgent] = []
        for spec in agents:
            for d in self.scheduler.add_spec(spec, now):
                assert isinstance(d, SpawnAgent)
                self._spawns.append(d)
        cfg = self.config
        hooks = InstanceHooks(self._agent_ready, self._agent_lost, self._agent_stopped)
        self.backend = self._backend = load_backend(  # public: where instances run (node_of)
            cfg.backend, cfg.health, self.clock, cfg.workdir, hooks, address=cfg.ray_address
        )
        self._attempts = a = Attempts(
            self.scheduler, self._backend, cfg, self._finished, self._settle_all
        )
        a.on_stopped = self._attempt_stopped
        self._agents_started = False
        self._early: list[Decision] = []  # pool decisions made while no run was going
        # What earlier runs learned about the agents feeds this run's routing.
        for spec_name, cap, arm in self.journal.load_stats():
            self.scheduler.learning.load(spec_name, cap, arm)
        thread = journal is not None and self.journal.blocking and cfg.journal_thread
        self._committer = c = Committer(
            self.journal, self.scheduler.learning, self._journal_failed, thread=bool(thread)
        )
        self._record: Sink = Sink() if journal is None else JournalSink(self.journal)
        self._quiet = journal is None  # no journal: records are looked up for listeners only
        c.sink = self._record
        self._publish: Sink = EventSink()
        self._handlers: dict[type, Callable[[Any], None]] = {  # output type -> its handler
            RouteTask: self._on_route, TaskCompleted: self._on_completed,
            RunCompleted: self._on_run_completed, DecomposeTask: self._on_decomposed,
            CancelTask: self._on_cancelled,
        }  # fmt: skip
        self._handles: dict[str, RunHandle] = {}
        self._loop: asyncio.AbstractEventLoop  # the loop of the runs: set when one starts
        self._launches: list[RouteTask] = []  # routed, to start once the journal has them
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._dispatch_pending = self._closed = False
        self._failure: JournalError | None = None
        self._unread: list[tuple[str, DeferredPart]] = []  # lazily resumed runs' settled tasks
        self._frozen = Freeze()  # resumed runs' records, kept out of the collector's passes
        self._lease = LeaseKeeper(self.journal, self._journal_failed, self.cancel, io=c)

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
        await self._attempts.aclose()
        await self._committer.idle()  # the journal is used directly below
        if self._unread and self._failure is None:
            self._read_rest(closing=True)  # so that partial results name every task
        fail_unfinished(self._handles.values(), self.batch_result)
        if self._agents_started:
            await self._backend.aclose(list(self.scheduler.agents.values()))
        if self._failure is None:
            await self._committer.drain()
        self._lease.close(release=self._failure is None)
        self._committer.close()
        self._frozen.release()

    @property
    def reaped(self) -> Reaped | None:
        """What dead orchestrators left running here, killed before the first run (reaper)."""
        return self._lease.reaped

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
        priority: int = 0,
    ) -> RunHandle:
        """Validate and accept a batch and start it; if it is invalid, raise and accept nothing.

        With a journal, the run is recorded before this returns. ``key`` names the batch (a
        workflow's hash): an unfinished run with it is resumed instead; earlier runs with it
        rank the tasks by their durations. Tasks with idempotency keys the journal holds are
        not submitted again (the run holding them is returned). ``priority``: its fair share."""
        if self._closed:
            raise RuntimeError("this orchestrator is closed") from self._failure
        await self._committer.idle()  # the journal is used directly until the run starts
        known = known_run(self.journal, tasks, key)
        if known is not None:
            if known in self._handles:
                return self._handles[known]
            return await self.resume(known, on_event=on_event)
        rid = run_id or f"run-{uuid.uuid4().hex[:10]}"
        now, sched, history = self.clock.now(), self.scheduler, durations_of(self.journal, key)
        with paused_gc():  # one bulk build of records: no collector passes in the middle of it
            run = sched.prepare(rid, tasks, now, name=name, where=where, priority=priority,
                                history=history)  # fmt: skip
        raced = self._lease.open_run(rid, run.name, tasks, key, source, self.config.workdir)
        if raced is not None:  # another process journaled this batch's run meanwhile
            return await self.resume(raced, on_event=on_event)
        self._frozen.hold_new(rid, len(run.tasks))  # large: kept out of the collector's passes
        return self._start_run(run, now, on_event)

    async def resume(self, run_id: str, *, on_event: EventCallback | None = None) -> RunHandle:
        """Resume a journaled run (``RunOwned`` while another live process holds its lease):
        finished tasks keep their results (and feed dependents), attempts in flight rerun."""
        if run_id in self._handles:
            return self._handles[run_id]
        await self._committer.idle()
        if run_id in self._handles:
            return self._handles[run_id]
        self._lease.acquire(run_id)
        # A large run makes objects by the hundred thousand, none cyclic: no collector passes.
        with paused_gc():
            # Lazily (unless budgets need every attempt's spend): the tasks that succeeded
            # (outside decompositions) are read back after the first dispatch turn.
            now, lazy = self.clock.now(), self.config.budget.empty
            run, part = restore_run(self.scheduler, self.journal, run_id, now, lazy)
            handle = self._start_run(run, now, on_event)
            if part is not None:
                self._unread.append((run_id, part))
            if run.finished_at is None:
                self._frozen.hold(run_id)
            return handle

    def _read_rest(self, *, closing: bool = False) -> None:
        """Read back the settled tasks of runs resumed lazily, now that work is under way (or
        the orchestrator is closing and reports what it has)."""
        if not closing and self._committer.busy:  # the journal is read directly here
            self._committer.when_idle(self._read_rest)
            return
        pending, self._unread = self._unread, []
        for run_id, part in pending:
            if self._closed and not closing:
                return
            try:
                with paused_gc():
                    outs = read_settled(self.scheduler, run_id, part, self.clock.now())
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
            self._record.decided(handle, d, None)
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
        return self.scheduler.task_states(run_id)

    def waiting(self) -> dict[str, str]:
        """Capabilities whose queued tasks no live agent can serve now, with the reason."""
        return self.scheduler.waiting_reasons()

    def batch_result(self, run_id: str) -> BatchResult:
        return run_result(
            self.scheduler, self._handles[run_id], self.clock.now(),
            max_concurrency=self.config.max_concurrency, born=self._born,
        )  # fmt: skip

    def forget(self, run_id: str) -> None:
        """Drop a finished run from memory (a journal keeps its record), so that a long-lived
        orchestrator's memory does not grow with the runs it served. Take its
        ``batch_result`` first. Raises ``WorkflowError`` while the run has open tasks."""
        self.scheduler.forget(run_id)
        self._handles.pop(run_id, None)

    # --- agent instances ----------------------------------------------------------------------

    def _start_agents(self) -> None:
        if not self._agents_started:
            self._agents_started = True
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
            self._record.decided(h, d, None)
            if h.listening:
                self._publish.decided(h, d, None)
        if self._agents_started:
            carry_out(d, self._backend, self.scheduler)

    # --- carrying out decisions ---------------------------------------------------------------

    def _apply(self, outs: Sequence[Output]) -> None:
        """Record outputs (journal, decision log, events); queue routed attempts for launch."""
        handlers = self._handlers
        other = self._on_decision
        for o in outs:
            handlers.get(type(o), other)(o)

    def _on_route(self, o: RouteTask) -> None:
        h = self._handles[o.run_id]  # type: ignore[index]
        h.decisions.append(o)
        self._launches.append(o)  # started once the journal has it (``_dispatch_now``)
        if self._quiet and not h.listening:
            return  # events are built only for someone listening
        rec = self.scheduler.runs[h.run_id].tasks[o.task_id]  # type: ignore[index]
        self._record.routed(h, o, rec)
        if h.listening:
            self._publish.routed(h, o, rec)

    def _on_completed(self, o: TaskCompleted) -> None:
        h = self._handles[o.run_id]
        if self._quiet and not h.listening:
            return
        rec = self.scheduler.runs[o.run_id].tasks[o.task_id]
        self._record.succeeded(h, rec, o.at)
        if h.listening:
            self._publish.succeeded(h, rec, o.at)

    def _on_run_completed(self, o: Output) -> None:
        assert isinstance(o, RunCompleted)
        h = self._handles[o.run_id]
        self._record.run_completed(h, o.at)

        def ended() -> None:  # once the journal has the end
            self._lease.finished(o.run_id)
            if h.listening:
                self._publish.run_completed(h, o.at)
            h.settle()
            self._frozen.release(o.run_id)

        self._committer.commit(ended)

    def _on_decision(self, o: Output) -> None:
        assert isinstance(o, Decision)
        if o.run_id is None:
            self._pool_decision(o)
            return
        owner = self._handles.get(o.run_id)
        if owner is None:
            return
        owner.decisions.append(o)
        rec = self.scheduler.runs[o.run_id].tasks[o.task_id] if ends_task(o) else None  # type: ignore[index]
        self._record.decided(owner, o, rec)
        if owner.listening:
            self._publish.decided(owner, o, rec)

    def _on_decomposed(self, o: Output) -> None:
        assert isinstance(o, DecomposeTask)
        owner = self._handles.get(o.run_id or "")
        if owner is not None:
            subs = self.scheduler.runs[owner.run_id].tasks
            self._record.expanded(owner, [subs[c].task for c in o.subtasks])
        self._on_decision(o)

    def _on_cancelled(self, o: Output) -> None:
        assert isinstance(o, CancelTask)
        self._on_decision(o)
        rec = self.scheduler.runs[o.run_id or ""].tasks[o.task_id or ""]
        self._attempts.stop(
            rec.run.id, rec.task.id, rec.attempts[-1].number if o.was_running else 0
        )
        owner = self._handles.get(rec.run.id)
        if o.was_running and owner is not None:
            self._record.attempt_ended(owner, rec.task.id, rec.attempts[-1])

    def _attempt_stopped(self, run_id: str, task_id: str, attempt: int) -> None:
        """A cancelled attempt's work stopped: its slot and resources are free now."""
        if not self._closed:
            self._apply(self.scheduler.stopped(run_id, task_id, attempt, self.clock.now()))
            self._schedule_dispatch()

    def _journal_failed(self, exc: JournalError) -> None:
        self._failure = exc
        self._closed = True
        self._lease.stop()
        self._launches.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._attempts.stop_all()
        self._settle_all(exc)
        self._frozen.release()

    # --- attempts -----------------------------------------------------------------------------

    def _settle_all(self, exc: Exception) -> None:
        """Fail every waiting run with ``exc`` (a bug in finishing an attempt: loudly, rather
        than leave them hanging)."""
        for h in self._handles.values():
            h.settle(exc)

    def _finished(
        self, ctx: AttemptContext, outcome: Outcome, output: object, error: str | None
    ) -> None:
        task = ctx.task
        sched = self.scheduler
        now = self.clock.now()
        out = output if outcome is Outcome.SUCCEEDED else None
        outs = sched.finish(ctx.run_id, task.id, ctx.attempt, outcome, now, output=out, error=error)
        if outs and not self._quiet:
            self._record.attempt_finished(sched.runs[ctx.run_id].tasks[task.id], ctx.attempt)
        self._apply(outs)
        crashpoints.hit("after_result_before_commit")
        # One dispatch per loop turn serves every attempt that finished in it.
        self._schedule_dispatch()

    # --- the dispatch loop --------------------------------------------------------------------

    def _schedule_dispatch(self) -> None:
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self._loop.call_soon(self._dispatch_now)

    def _dispatch_now(self) -> None:
        """One dispatch turn: route what can run, commit the journal, then (once the commit has
        landed: at once, or when the writer thread is done) start the routed attempts.

        If the journal cannot be written, nothing more may run unrecorded: every open run fails
        with the journal's error (``_journal_failed``) and nothing is started.
        """
        self._dispatch_pending = False
        if self._closed:
            return
        with paused_gc():  # a turn builds a burst of records: collect after it, not during
            self._apply(self.scheduler.tick(self.clock.now()))
        launches, self._launches = self._launches, []
        if self._committer.commit(lambda: self._launch(launches)):
            self._arm_timer()

    def _launch(self, launches: list[RouteTask]) -> None:
        if self._closed:  # attempts whose routing the journal has start, unless closed
            return
        crashpoints.hit("after_commit_before_dispatch")
        start = self._attempts.start
        for d in launches:
            start(d)
        if self._unread:  # after the attempts just launched have taken their first step
            self._loop.call_soon(self._read_rest)

    def _arm_timer(self) -> None:
        """Wake at the scheduler's next due time. The wait is a loop timer: on a loop driven by
        the injected clock (``runtime.virtual``) it passes in virtual time."""
        wake = self.scheduler.next_wakeup()
        if wake is None or (self._timer_at is not None and self._timer_at <= wake):
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, wake - self.clock.now())
        self._timer_at = wake
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._dispatch_now()
