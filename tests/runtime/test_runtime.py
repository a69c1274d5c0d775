"""The Orchestrator with function agents: parallelism, data flow, events, failures, shutdown.

Concurrent steps are ordered by state (events, barriers), never by sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    Attempt,
    AttemptContext,
    BatchResult,
    Event,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryPolicy,
    RunFailed,
    TaskResult,
    TaskState,
    UnknownCapabilityError,
    WorkflowError,
)
from metaagent.testing import task

if TYPE_CHECKING:
    from collections.abc import Callable

FAST_RETRY = RetryPolicy(base_s=0.001, max_s=0.01, jitter=0.0)
BARRIER_S = 5.0  # a barrier that is not reached in this long means the tasks did not overlap


def config(**kw: object) -> OrchestratorConfig:
    kw.setdefault("retry", FAST_RETRY)
    return OrchestratorConfig(**kw)  # type: ignore[arg-type]


def agent(name: str, fn: Callable[..., object], *, cap: str = "code", prof: float = 0.8,
          concurrency: int = 1) -> AgentSpec:  # fmt: skip
    return AgentSpec(name, {cap: prof}, FunctionRunner(fn), concurrency=concurrency)


class Meter:
    """Counts attempts running at once and remembers the peak."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.reached: dict[int, asyncio.Event] = {}

    def at(self, n: int) -> asyncio.Event:
        return self.reached.setdefault(n, asyncio.Event())

    def enter(self) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.at(self.active).set()

    def leave(self) -> None:
        self.active -= 1


# --- parallelism ------------------------------------------------------------------------------


async def test_batch_runs_tasks_at_the_same_time() -> None:
    meter = Meter()

    async def work(ctx: AttemptContext) -> str:
        meter.enter()
        # Each task waits until all four are in: only possible if they really overlap.
        await asyncio.wait_for(meter.at(4).wait(), BARRIER_S)
        meter.leave()
        return ctx.task.id.upper()

    async with Orchestrator([agent("pool", work, concurrency=4)], config(max_concurrency=4)) as o:
        batch = await o.execute_batch([task(f"t{i}") for i in range(4)], name="par")
    assert batch.ok
    assert [r.output for r in batch.results] == ["T0", "T1", "T2", "T3"]
    assert batch.peak_parallelism == 4
    assert batch.counts["succeeded"] == 4
    assert batch.name == "par"
    assert batch.dispatches_per_task == 1.0


async def test_parallelism_is_bounded_by_max_concurrency() -> None:
    meter = Meter()
    gate = asyncio.Event()

    async def work(ctx: AttemptContext) -> None:
        meter.enter()
        await gate.wait()
        meter.leave()

    orch = Orchestrator([agent("pool", work, concurrency=10)], config(max_concurrency=2))
    async with orch:
        handle = await orch.submit([task(f"t{i}") for i in range(6)])
        await asyncio.wait_for(meter.at(2).wait(), BARRIER_S)
        # Routing is decided synchronously: with two running, the rest wait in the queue.
        states = [orch.scheduler.task(handle.run_id, f"t{i}").state for i in range(6)]
        assert states.count(TaskState.RUNNING) == 2
        assert states.count(TaskState.READY) == 4
        gate.set()
        batch = await handle.result()
    assert batch.ok
    assert meter.peak == 2
    assert batch.peak_parallelism == 2
    assert batch.slots == 2


async def test_parallelism_is_bounded_by_agent_slots() -> None:
    meter = Meter()
    gate = asyncio.Event()
    where: list[str] = []

    async def work(ctx: AttemptContext) -> None:
        where.append(ctx.instance)
        meter.enter()
        await gate.wait()
        meter.leave()

    orch = Orchestrator(
        [agent("a", work, prof=0.9), agent("b", work, prof=0.5)], config(max_concurrency=10)
    )
    async with orch:
        handle = await orch.submit([task(f"t{i}") for i in range(4)])
        await asyncio.wait_for(meter.at(2).wait(), BARRIER_S)
        assert sorted(where) == ["a", "b"]  # one slot each
        assert orch.scheduler.running == 2
        gate.set()
        batch = await handle.result()
    assert batch.ok
    assert meter.peak == 2
    assert len(where) == 4


async def test_sync_functions_run_in_worker_threads_in_parallel() -> None:
    barrier = threading.Barrier(2, timeout=BARRIER_S)
    main = threading.get_ident()

    def blocking(ctx: AttemptContext) -> bool:
        barrier.wait()  # both must be in at once: they cannot both be on the event loop
        return threading.get_ident() != main

    async with Orchestrator([agent("sync", blocking, concurrency=2)], config()) as orch:
        batch = await orch.execute_batch([task("a"), task("b")])
    assert batch.ok, [r.error for r in batch.results]
    assert [r.output for r in batch.results] == [True, True]


# --- data flow --------------------------------------------------------------------------------


async def test_upstream_outputs_are_passed_to_dependents() -> None:
    seen: dict[str, dict[str, object]] = {}

    async def work(ctx: AttemptContext) -> object:
        seen[ctx.task.id] = dict(ctx.upstream)
        if ctx.task.id == "sum":
            return sum(ctx.upstream.values())  # type: ignore[arg-type]
        return ctx.task.input

    tasks = [task("a", input=2), task("b", input=3), task("sum", "a", "b")]
    async with Orchestrator([agent("calc", work, concurrency=2)], config()) as orch:
        batch = await orch.execute_batch(tasks)
    assert batch.result("sum").output == 5
    assert seen == {"a": {}, "b": {}, "sum": {"a": 2, "b": 3}}
    assert batch.result("sum").ready_at >= batch.result("a").finished_at  # type: ignore[operator]


async def test_execute_concurrent_returns_the_result_or_raises_run_failed() -> None:
    both_in = asyncio.Event()
    arrived = 0

    async def work(ctx: AttemptContext) -> str:
        nonlocal arrived
        if ctx.task.input == "fail":
            raise ValueError("bad input")
        arrived += 1
        if arrived == 2:
            both_in.set()
        await asyncio.wait_for(both_in.wait(), BARRIER_S)
        return f"did {ctx.task.id}"

    async with Orchestrator([agent("w", work, concurrency=2)], config()) as orch:
        r1, r2 = await asyncio.gather(
            orch.execute_concurrent(task("x")), orch.execute_concurrent(task("y"))
        )
        assert isinstance(r1, TaskResult)
        assert (r1.output, r2.output) == ("did x", "did y")
        assert r1.ok
        with pytest.raises(RunFailed, match="task 'z' ended failed") as info:
            await orch.execute_concurrent(task("z", input="fail", max_attempts=2))
    res = info.value.result
    assert isinstance(res, TaskResult)
    assert res.state is TaskState.FAILED
    assert len(res.attempts) == 2
    assert res.error == "ValueError: bad input"


async def test_invalid_batch_is_refused_and_nothing_runs() -> None:
    calls = 0

    async def work(ctx: AttemptContext) -> None:
        nonlocal calls
        calls += 1

    async with Orchestrator([agent("w", work)], config()) as orch:
        with pytest.raises(UnknownCapabilityError, match="known capabilities: code"):
            await orch.submit([task("a"), AgentTask("b", "design")])
        with pytest.raises(WorkflowError, match="unknown task 'nope'"):
            await orch.submit([task("a"), task("b", "nope")])
        assert orch.scheduler.runs == {}
        assert orch.scheduler.queued == 0
        batch = await orch.execute_batch([task("ok")])
    assert batch.ok
    assert calls == 1


# --- figures ----------------------------------------------------------------------------------


def test_aggregate_results_figures_on_literal_results() -> None:
    def att(n: int, agent: str, start: float, end: float, outcome: Outcome) -> Attempt:
        return Attempt(n, agent, agent, start, end, outcome)

    ok = Outcome.SUCCEEDED
    results = [
        TaskResult("a", TaskState.SUCCEEDED, 1, None, "x", [att(1, "x", 0.0, 2.0, ok)],
                   "code", 0.0, 2.0),
        TaskResult("b", TaskState.SUCCEEDED, 2, None, "y", [att(1, "y", 1.0, 3.0, ok)],
                   "code", 0.0, 3.0),
        TaskResult("c", TaskState.FAILED, None, "boom", "y",
                   [att(1, "x", 2.0, 2.5, Outcome.ERROR), att(2, "y", 3.0, 4.0, Outcome.TIMEOUT)],
                   "code", 0.0, 4.0),
        TaskResult("d", TaskState.SKIPPED, None, "upstream task 'c' failed", None, [], "code",
                   None, 4.0),
    ]  # fmt: skip
    batch = Orchestrator.aggregate_results(results)
    assert batch.counts == {
        "succeeded": 2,
        "failed": 1,
        "cancelled": 0,
        "skipped": 1,
    }
    assert batch.makespan_s == 4.0
    assert batch.total_run_s == pytest.approx(2.0 + 2.0 + 0.5 + 1.0)
    # [0,2] [1,3] [2,2.5] [3,4]: at most two at once; ending at 2.0 and starting at 2.0 do not
    # overlap, nor do 3.0 and 3.0.
    assert batch.peak_parallelism == 2
    assert batch.dispatches_per_task == 1.0  # 4 attempts over 4 tasks (none for the skipped one)
    assert batch.speedup == pytest.approx(5.5 / 4.0)
    assert batch.slots == 2  # no slot count given: the peak
    assert batch.utilisation == pytest.approx(5.5 / (2 * 4.0))
    assert batch.agents["x"]["busy_s"] == 2.5
    assert batch.agents["y"]["busy_s"] == 3.0
    assert not batch.ok
    assert batch.result("c").error == "boom"
    with pytest.raises(KeyError):
        batch.result("zzz")
    data = batch.to_json()
    assert data["counts"] == batch.counts
    assert [t["id"] for t in data["tasks"]] == ["a", "b", "c", "d"]  # type: ignore[index, union-attr]
    assert data["tasks"][2]["attempts"][1]["outcome"] == "timeout"  # type: ignore[index]


def test_aggregate_of_nothing() -> None:
    batch = Orchestrator.aggregate_results([])
    assert (batch.makespan_s, batch.peak_parallelism, batch.dispatches_per_task) == (0.0, 0, 0.0)
    assert batch.ok
    assert batch.speedup == 0.0


# --- events -----------------------------------------------------------------------------------


async def test_event_stream_reports_running_succeeded_and_the_run_end() -> None:
    async def work(ctx: AttemptContext) -> str:
        return ctx.task.id

    seen_by_callback: list[Event] = []
    async with Orchestrator([agent("w", work, concurrency=2)], config()) as orch:
        handle = await orch.submit([task("a"), task("b", "a")], on_event=seen_by_callback.append)
        stream = handle.events()
        events = [e async for e in stream]
        assert handle.done()
        batch = await handle.result()
    assert batch.ok
    task_events = [(e.task_id, e.state) for e in events if e.kind == "task"]
    assert task_events == [
        ("a", "running"),
        ("a", "succeeded"),
        ("b", "running"),
        ("b", "succeeded"),
    ]
    assert events[-1].kind == "run"
    assert sum(1 for e in events if e.kind == "run") == 1
    assert all(e.run_id == handle.run_id for e in events)
    running = next(e for e in events if e.state == "running")
    assert running.agent == "w"
    assert running.decision is not None
    assert running.decision.type == "route_task"
    ats = [e.at for e in events]
    assert ats == sorted(ats)
    assert all(t >= 0.0 for t in ats)
    assert seen_by_callback == events
    # Subscribing after the end yields nothing and ends at once.
    assert [e async for e in handle.events()] == []


async def test_events_report_retries_failures_and_skips() -> None:
    async def work(ctx: AttemptContext) -> None:
        raise RuntimeError(f"no luck on {ctx.agent}")

    async with Orchestrator([agent("a", work), agent("b", work, prof=0.4)], config()) as orch:
        handle = await orch.submit([task("x", max_attempts=2), task("y", "x")])
        events = [e async for e in handle.events()]
    states = [(e.task_id, e.state, e.agent) for e in events if e.kind == "task"]
    assert states == [
        ("x", "running", "a"),
        ("x", "retrying", "a"),
        ("x", "running", "b"),
        ("x", "failed", None),
        ("y", "skipped", None),
    ]
    retry = next(e for e in events if e.state == "retrying")
    assert retry.detail is not None
    assert "RuntimeError: no luck on a" in retry.detail


# --- failures ---------------------------------------------------------------------------------


async def test_raising_function_is_retried_on_another_agent_then_fails() -> None:
    async def work(ctx: AttemptContext) -> None:
        raise ValueError(f"boom from {ctx.agent}")

    orch = Orchestrator([agent("alpha", work, prof=0.9), agent("beta", work, prof=0.6)], config())
    async with orch:
        batch = await orch.execute_batch([task("t", max_attempts=3), task("after", "t")])
    t = batch.result("t")
    assert t.state is TaskState.FAILED
    assert [(a.number, a.agent, a.outcome) for a in t.attempts] == [
        (1, "alpha", Outcome.ERROR),
        (2, "beta", Outcome.ERROR),
        (3, "alpha", Outcome.ERROR),
    ]
    assert [a.error for a in t.attempts] == [
        "ValueError: boom from alpha",
        "ValueError: boom from beta",
        "ValueError: boom from alpha",
    ]
    assert all(a.finished_at is not None and a.finished_at >= a.started_at for a in t.attempts)
    assert batch.result("after").state is TaskState.SKIPPED
    fail = next(d for d in batch.decisions if d.type == "fail_task")
    assert "all 3 attempts failed" in fail.reason
    assert batch.dispatches_per_task == 1.5


async def test_a_retry_succeeds_on_the_fallback_agent() -> None:
    async def flaky(ctx: AttemptContext) -> str:
        if ctx.agent == "alpha":
            raise ConnectionError("alpha is down")
        return f"done by {ctx.agent}"

    orch = Orchestrator([agent("alpha", flaky, prof=0.9), agent("beta", flaky, prof=0.6)], config())
    async with orch:
        result = await orch.execute_concurrent(task("t"))
    assert result.output == "done by beta"
    assert [(a.agent, a.outcome) for a in result.attempts] == [
        ("alpha", Outcome.ERROR),
        ("beta", Outcome.SUCCEEDED),
    ]


async def test_timeout_is_told_apart_from_an_error() -> None:
    never = asyncio.Event()
    stopped = asyncio.Event()

    async def work(ctx: AttemptContext) -> None:
        if ctx.task.id == "raises":
            raise TimeoutError("the agent's own socket timed out")
        try:
            await never.wait()
        finally:
            stopped.set()

    async with Orchestrator([agent("w", work, concurrency=2)], config()) as orch:
        batch = await orch.execute_batch(
            [
                task("slow", timeout_s=0.2, max_attempts=1),
                task("raises", timeout_s=30, max_attempts=1),
            ]
        )
    slow, raises = batch.result("slow"), batch.result("raises")
    assert slow.attempts[0].outcome is Outcome.TIMEOUT
    assert slow.error == "timed out after 0.2s; the attempt was stopped"
    assert stopped.is_set()  # the coroutine was really stopped
    assert raises.attempts[0].outcome is Outcome.ERROR
    assert raises.error == "TimeoutError: the agent's own socket timed out"


async def test_default_timeout_applies_to_tasks_without_their_own() -> None:
    async def work(ctx: AttemptContext) -> None:
        await asyncio.Event().wait()

    async with Orchestrator([agent("w", work)], config(default_timeout_s=0.1)) as orch:
        batch = await orch.execute_batch([task("t", max_attempts=1)])
    assert batch.result("t").attempts[0].outcome is Outcome.TIMEOUT


# --- cancellation and shutdown ----------------------------------------------------------------


async def test_cancel_stops_a_running_coroutine_and_skips_dependents() -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def work(ctx: AttemptContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with Orchestrator([agent("w", work)], config()) as orch:
        handle = await orch.submit([task("long"), task("next", "long")])
        await asyncio.wait_for(started.wait(), BARRIER_S)
        await handle.cancel(["long"])
        batch = await asyncio.wait_for(handle.result(), BARRIER_S)
        assert stopped.is_set()
        assert len(orch._attempts) == 0
    assert batch.result("long").state is TaskState.CANCELLED
    assert batch.result("long").attempts[0].outcome is Outcome.CANCELLED
    assert batch.result("next").state is TaskState.SKIPPED
    assert batch.counts["cancelled"] == 1
    kinds = [d.type for d in batch.decisions]
    assert kinds.count("cancel_task") == 1
    assert kinds.count("skip_task") == 1


async def test_aclose_stops_running_attempts_and_fails_their_runs() -> None:
    meter = Meter()
    stopped: list[str] = []

    async def work(ctx: AttemptContext) -> None:
        meter.enter()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(ctx.task.id)

    orch = Orchestrator([agent("w", work, concurrency=2)], config())
    async with orch:
        handle = await orch.submit([task("a"), task("b"), task("c", "a")])
        await asyncio.wait_for(meter.at(2).wait(), BARRIER_S)
    assert sorted(stopped) == ["a", "b"]
    assert len(orch._attempts) == 0
    # A waiter on the run is told, rather than left waiting for work that will never run.
    assert handle.done()
    with pytest.raises(RunFailed, match="closed before run") as info:
        await handle.result()
    partial = info.value.result
    assert isinstance(partial, BatchResult)
    assert partial.result("c").state is TaskState.PENDING
    assert [e async for e in handle.events()] == []
    with pytest.raises(RuntimeError, match="closed"):
        await orch.submit([task("d")])


async def test_decisions_are_kept_with_times_relative_to_the_run() -> None:
    async def work(ctx: AttemptContext) -> int:
        return 1

    async with Orchestrator([agent("w", work)], config()) as orch:
        batch = await orch.execute_batch([task("short"), task("long"), task("l2", "long")])
    kinds = [d.type for d in batch.decisions]
    # The pool's start-up comes first: the agent's instance is spawned for the run.
    assert kinds[0] == "spawn_agent"
    kinds = kinds[1:]
    assert kinds[0] == "optimize_workflow"
    assert kinds.count("route_task") == 3
    data = batch.to_json()
    decisions = data["decisions"]
    assert isinstance(decisions, list)
    routes = [d for d in decisions if d["type"] == "route_task"]
    # "long" heads the longer chain; "short" and "l2" tie on rank, so the older goes first.
    assert [d["task_id"] for d in routes] == ["long", "short", "l2"]
    assert all(
        0.0 <= d["at"] <= batch.makespan_s + 1e-6 for d in decisions if d["type"] != "spawn_agent"
    )
    # The instance was started with the orchestrator, just before the run.
    assert [d["at"] <= 0.0 for d in decisions if d["type"] == "spawn_agent"] == [True]
    assert all(set(d["breakdown"]) >= {"wait", "run", "success"} for d in routes)
