"""``metaagent.testing``: the helpers users test their own agents and workflows with."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import threading
from pathlib import Path

import pytest

import metaagent.testing as testing
from metaagent import (
    AgentSpec,
    AgentTask,
    AttemptContext,
    FailTask,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryTask,
    RouteTask,
    TaskState,
)
from metaagent.core.decisions import RunCompleted, TaskCompleted
from metaagent.testing import (
    FAST_RETRY,
    NO_JITTER_RETRY,
    CallLog,
    ConcurrencyMeter,
    EventLog,
    SpecFields,
    StateNotReached,
    TaskFields,
    agent_spec,
    decisions_of,
    echo_runner,
    flaky_runner,
    make_scheduler,
    noop_runner,
    routed_task_ids,
    run_until_idle,
    task,
    wait_until,
)

SOURCE = Path(testing.__file__)


def ctx(t: AgentTask, attempt: int = 1, agent: str = "a") -> AttemptContext:
    return AttemptContext(t, "run", attempt, agent, agent)


def orchestrator(*specs: AgentSpec) -> Orchestrator:
    return Orchestrator(list(specs), OrchestratorConfig(retry=FAST_RETRY))


# --- the module itself --------------------------------------------------------------------------


def test_the_module_needs_no_test_framework() -> None:
    tree = ast.parse(SOURCE.read_text())
    imported = {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names
    }
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("pytest", "_pytest", "hypothesis")}


def test_every_public_name_exists_and_is_documented() -> None:
    assert len(set(testing.__all__)) == len(testing.__all__)
    for name in testing.__all__:
        obj = getattr(testing, name)
        if callable(obj):
            assert obj.__doc__, name


def test_state_not_reached_is_a_test_failure_of_the_package() -> None:
    err = StateNotReached("the flag set", 0.5)
    assert isinstance(err, AssertionError)
    assert str(err) == "not reached within 0.5 s: the flag set"
    assert (err.what, err.timeout_s) == ("the flag set", 0.5)
    assert str(StateNotReached("idle")) == "not reached: idle"


# --- building tasks and agents ------------------------------------------------------------------


def test_task_takes_dependencies_positionally_and_fields_by_keyword() -> None:
    t = task("tests", "api", "db", priority=2, complexity=0.9)
    assert (t.id, t.capability, t.depends_on) == ("tests", "code", ("api", "db"))
    assert (t.priority, t.complexity) == (2, 0.9)
    assert task("doc", capability="docs").capability == "docs"


def test_task_fields_cover_every_other_field_of_agent_task() -> None:
    fields = {f.name for f in dataclasses.fields(AgentTask)}
    assert set(TaskFields.__annotations__) == fields - {"id", "capability", "depends_on"}


def test_spec_fields_cover_every_other_field_of_agent_spec() -> None:
    fields = {f.name for f in dataclasses.fields(AgentSpec)}
    assert set(SpecFields.__annotations__) == fields - {"name", "capabilities", "runner"}


def test_agent_spec_defaults_to_a_noop_runner() -> None:
    spec = agent_spec("alpha", {"code": 0.9}, concurrency=2, max_instances=3)
    assert (spec.name, dict(spec.capabilities), spec.concurrency) == ("alpha", {"code": 0.9}, 2)
    assert spec.max_instances == 3
    assert spec.runner.describe() == {"type": "function", "function": "noop"}
    runner = echo_runner()
    assert agent_spec("beta", {"code": 0.5}, runner).runner is runner


def test_the_retry_policies_have_no_jitter() -> None:
    assert FAST_RETRY.jitter == NO_JITTER_RETRY.jitter == 0.0
    assert FAST_RETRY.max_s < 0.1
    assert NO_JITTER_RETRY.base_s == 1.0


# --- fake runners -------------------------------------------------------------------------------


async def test_noop_and_echo_runners() -> None:
    assert await noop_runner().run(ctx(task("x"))) is None
    assert await echo_runner().run(ctx(task("x"))) == "x"


async def test_flaky_runner_fails_the_first_attempts_of_each_task() -> None:
    runner = flaky_runner(2, error=ConnectionError)
    for attempt in (1, 2):
        with pytest.raises(ConnectionError, match=f"attempt {attempt} of x fails on purpose"):
            await runner.run(ctx(task("x"), attempt))
    assert await runner.run(ctx(task("x"), 3)) == "x"
    assert await flaky_runner(0).run(ctx(task("y"))) == "y"
    with pytest.raises(ValueError, match="at least 0"):
        flaky_runner(-1)


async def test_flaky_runner_in_a_run_retries_then_succeeds_or_fails_for_good() -> None:
    async with orchestrator(agent_spec("a", {"code": 0.9}, flaky_runner(1))) as orch:
        batch = await orch.execute_batch([task("x")])
    assert batch.result("x").state is TaskState.SUCCEEDED
    assert [a.outcome for a in batch.result("x").attempts] == [Outcome.ERROR, Outcome.SUCCEEDED]
    async with orchestrator(agent_spec("a", {"code": 0.9}, flaky_runner(5))) as orch:
        batch = await orch.execute_batch([task("x", max_attempts=2), task("after", "x")])
    assert batch.result("x").state is TaskState.FAILED
    assert batch.result("after").state is TaskState.SKIPPED


async def test_call_log_records_every_attempt() -> None:
    log = CallLog()
    spec = agent_spec("a", {"code": 0.9}, log.runner(), concurrency=2)
    async with orchestrator(spec) as orch:
        batch = await orch.execute_batch([task("a"), task("b", "a")])
    assert [r.output for r in batch.results] == ["a", "b"]
    assert log.ran == ["a", "b"]
    assert log.calls == {"a": 1, "b": 1}
    assert log.contexts[1].upstream == {"a": "a"}


async def test_call_log_answers_with_a_plain_or_an_async_body() -> None:
    plain = CallLog(lambda c: c.task.id.upper())

    async def later(c: AttemptContext) -> str:
        await asyncio.sleep(0)
        return c.prompt

    assert await FunctionRunner(plain).run(ctx(task("x"))) == "X"
    assert await CallLog(later).runner().run(ctx(task("x", prompt="hi"))) == "hi"
    assert plain.calls == {"x": 1}


# --- the pure core on virtual time --------------------------------------------------------------


def test_make_scheduler_registers_one_ready_instance_per_spec() -> None:
    s = make_scheduler(agent_spec("a", {"code": 0.9}), agent_spec("b", {"test": 0.9}))
    assert sorted(s.known_capabilities()) == ["code", "test"]
    assert s.config.retry == NO_JITTER_RETRY
    s.submit("r", [task("x"), task("y", capability="test")], now=0.0)
    outs = s.dispatch(0.0)
    assert routed_task_ids(outs) == ["x", "y"]
    assert [d.agent for d in decisions_of(outs, RouteTask)] == ["a", "b"]
    assert decisions_of(outs, RetryTask) == []


def test_run_until_idle_finishes_every_task_in_dependency_order() -> None:
    s = make_scheduler(agent_spec("a", {"code": 0.9}, concurrency=2))
    s.submit("r", [task("a"), task("b", "a"), task("c")], now=0.0)
    outs = run_until_idle(s, outputs={"b": {"built": True}})
    assert routed_task_ids(outs) == ["a", "c", "b"]
    assert [o.task_id for o in decisions_of(outs, TaskCompleted)] == ["a", "c", "b"]
    assert decisions_of(outs, RunCompleted)[0].at == 3.0  # three attempts, one second each
    assert s.task("r", "b").output == {"built": True}
    assert s.task("r", "a").output == "a"


def test_run_until_idle_jumps_over_retry_back_offs() -> None:
    s = make_scheduler(agent_spec("a", {"code": 0.9}))
    s.submit("r", [task("x"), task("after", "x")], now=0.0)
    outs = run_until_idle(s, failing={"x"})
    retries = decisions_of(outs, RetryTask)
    assert [r.delay_s for r in retries] == [1.0, 2.0]  # NO_JITTER_RETRY: exact back-offs
    assert [d.task_id for d in decisions_of(outs, FailTask)] == ["x"]
    assert s.task("r", "after").state is TaskState.SKIPPED
    assert decisions_of(outs, RunCompleted)[0].at == 6.0  # 1 + 1 + 1 + 2 + 1: no real waiting


def test_run_until_idle_gives_up_after_max_steps() -> None:
    s = make_scheduler(agent_spec("a", {"code": 0.9}))
    s.submit("r", [task(f"t{i}") for i in range(5)], now=0.0)
    with pytest.raises(StateNotReached, match="idle scheduler in 3 steps"):
        run_until_idle(s, max_steps=3)


# --- waiting on state ---------------------------------------------------------------------------


async def test_wait_until_sees_a_change_made_by_another_coroutine() -> None:
    flag: list[bool] = []

    async def setter() -> None:
        await asyncio.sleep(0)
        flag.append(True)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(setter())
        await wait_until(lambda: bool(flag), what="the flag set")
    assert flag == [True]


async def test_wait_until_sees_a_change_made_by_a_thread() -> None:
    done = threading.Event()
    thread = threading.Thread(target=done.set)
    thread.start()
    try:
        await wait_until(done.is_set)
    finally:
        thread.join()


async def test_wait_until_fails_naming_the_state() -> None:
    with pytest.raises(StateNotReached, match=r"within 0.02 s: the flag set") as info:
        await wait_until(lambda: False, timeout_s=0.02, what="the flag set")
    assert info.value.timeout_s == 0.02


async def test_event_log_waits_for_a_task_state_and_keeps_the_story() -> None:
    log = EventLog()
    gate = asyncio.Event()

    async def body(c: AttemptContext) -> str:
        await gate.wait()
        return c.task.id

    async with orchestrator(agent_spec("a", {"code": 0.9}, FunctionRunner(body))) as orch:
        handle = await orch.submit([task("x")], on_event=log)
        running = await log.wait_for_task("x", "running")
        assert running.agent == "a"
        assert orch.scheduler.task(handle.run_id, "x").state is TaskState.RUNNING
        gate.set()
        await handle.result()
    assert log.states("x") == ["running", "succeeded"]
    # An event seen before the wait began is found at once.
    assert (await log.wait_for_task("x", "running")) is running
    run_end = await log.wait_for(lambda e: e.kind == "run")
    assert run_end.run_id == handle.run_id


async def test_event_log_wait_times_out_and_forwards_a_broken_check() -> None:
    log = EventLog()
    with pytest.raises(StateNotReached, match="task 'x' running"):
        await log.wait_for_task("x", "running", timeout_s=0.01)

    def broken(event: object) -> bool:
        raise KeyError("oops")

    async with orchestrator(agent_spec("a", {"code": 0.9})) as orch:
        await orch.submit([task("x")], on_event=log)
        with pytest.raises(KeyError, match="oops"):
            await log.wait_for(broken)


async def test_concurrency_meter_proves_overlap_without_sleeping() -> None:
    meter = ConcurrencyMeter()

    async def body(c: AttemptContext) -> None:
        async with meter:
            await meter.reached(3)  # only possible if three attempts run at once

    spec = agent_spec("pool", {"code": 0.9}, FunctionRunner(body), concurrency=3)
    async with orchestrator(spec) as orch:
        batch = await orch.execute_batch([task(f"t{i}") for i in range(3)])
    assert batch.ok
    assert (meter.peak, meter.active) == (3, 0)
    await meter.reached(2)  # reached earlier: returns at once
    with pytest.raises(StateNotReached, match=r"4 at once \(peak 3, 0 now\)"):
        await meter.reached(4, timeout_s=0.01)
    with pytest.raises(RuntimeError, match="without a matching enter"):
        meter.leave()
