"""Timeouts and cancels that tell the truth: a sync function agent's thread cannot be killed, so
its attempt keeps its slot and resources until the thread has returned (past its limit, or
after a cancel); sync agents run in a bounded pool of their spec, so hung ones cannot starve
another spec.

Timers run on virtual time (``run_virtual``), but a sync agent's thread runs in real time: the
tests hold threads on ``threading.Event`` gates and release them, never sleeping for real.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from typing import TYPE_CHECKING

import pytest

from metaagent import FunctionRunner, ManualClock, Orchestrator, Outcome, TaskState
from metaagent.agents.base import AttemptContext
from metaagent.testing import agent_spec, run_virtual, task, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

_RAN_ON = re.compile(
    r"^timed out after 2s; its thread ran on for (?P<s>\d+\.\d)s more and has now returned$"
)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds hung threads; always released, so no thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()


def test_a_timed_out_thread_keeps_its_resource_until_it_returns(gate: threading.Event) -> None:
    clock = ManualClock()
    returned = threading.Event()
    seen: list[bool] = []  # per start of the second task: had the hung thread returned?

    def hung(ctx: AttemptContext) -> str:
        gate.wait()
        returned.set()
        return "too late"

    async def after(ctx: AttemptContext) -> str:
        seen.append(returned.is_set())
        return "ok"

    async def main() -> None:
        agents = [
            agent_spec("slow", {"slow": 1.0}, FunctionRunner(hung)),
            agent_spec("fast", {"fast": 1.0}, FunctionRunner(after)),
        ]
        async with Orchestrator(agents, clock=clock) as orch:
            handle = await orch.submit(
                [
                    task(
                        "hung",
                        capability="slow",
                        timeout_s=2,
                        max_attempts=1,
                        resources=("R",),
                        priority=5,
                    ),
                    task("next", capability="fast", resources=("R",)),
                ]
            )
            await asyncio.sleep(10)  # virtual: the limit passed 8 s ago
            assert seen == []  # R is still held: the thread that uses it runs on
            gate.set()
            batch = await handle.result()
        hung_result, next_result = batch.result("hung"), batch.result("next")
        assert hung_result.attempts[0].outcome is Outcome.TIMEOUT
        match = _RAN_ON.match(hung_result.error or "")
        assert match is not None, hung_result.error
        assert float(match["s"]) >= 8.0
        assert hung_result.attempts[0].duration_s >= 10.0  # the slot was held all along
        assert next_result.state is TaskState.SUCCEEDED
        assert seen == [True]

    run_virtual(main(), clock=clock)


def test_a_timed_out_thread_keeps_its_slot_until_it_returns(gate: threading.Event) -> None:
    clock = ManualClock()
    starts: list[str] = []

    def work(ctx: AttemptContext) -> str:
        starts.append(ctx.task.id)
        if ctx.task.id == "hung":
            gate.wait()
        return ctx.task.id

    async def main() -> None:
        agents = [agent_spec("a", {"code": 1.0}, FunctionRunner(work), concurrency=1)]
        async with Orchestrator(agents, clock=clock) as orch:
            handle = await orch.submit(
                [task("hung", timeout_s=2, max_attempts=1, priority=5), task("next")]
            )
            await asyncio.sleep(10)
            assert starts == ["hung"]  # the one slot is still the hung thread's
            gate.set()
            batch = await handle.result()
        assert batch.result("hung").attempts[0].outcome is Outcome.TIMEOUT
        assert batch.result("next").output == "next"
        assert starts == ["hung", "next"]

    run_virtual(main(), clock=clock, autojump_threshold_s=0.2)


def test_a_cancelled_thread_keeps_its_slot_and_resource_until_it_returns(
    gate: threading.Event,
) -> None:
    clock = ManualClock()
    entered = threading.Event()
    returned = threading.Event()
    seen: list[bool] = []  # per start of "waits": had the cancelled thread returned?

    def hung(ctx: AttemptContext) -> str:
        entered.set()
        gate.wait()
        returned.set()
        return "too late"

    async def other(ctx: AttemptContext) -> str:
        seen.append(returned.is_set())
        return ctx.task.id

    async def main() -> None:
        agents = [
            agent_spec("slow", {"slow": 1.0}, FunctionRunner(hung)),
            agent_spec("fast", {"fast": 1.0}, FunctionRunner(other), concurrency=4),
        ]
        async with Orchestrator(agents, clock=clock) as orch:
            first = await orch.submit([task("hung", capability="slow", resources=("R",))])
            await wait_until(entered.is_set)
            second = await orch.submit(
                [task("waits", capability="fast", resources=("R",), priority=5)]
            )
            await first.cancel(["hung"])
            # The cancel is final for the task at once ...
            assert orch.task_states(first.run_id) == {"hung": TaskState.CANCELLED}
            # ... but the thread still works inside R: a later run goes through dispatch
            # turns meanwhile, and "waits" is not started by any of them.
            probe = await (await orch.submit([task("probe", capability="fast")])).result()
            assert probe.result("probe").output == "probe"
            assert seen == [False]  # the probe's start only
            assert orch.task_states(second.run_id) == {"waits": TaskState.READY}
            assert list(orch.scheduler.stopping) == [(first.run_id, "hung", 1)]
            ((inst, _, resources),) = orch.scheduler.stopping.values()
            assert (inst.spec.name, inst.running, resources) == ("slow", 1, ("R",))
            gate.set()
            batch = await second.result()
            cancelled = await first.result()
            assert orch.scheduler.stopping == {}
        assert batch.result("waits").output == "waits"
        assert seen == [False, True]
        (att,) = cancelled.result("hung").attempts
        assert att.outcome is Outcome.CANCELLED

    run_virtual(main(), clock=clock, autojump_threshold_s=0.2)


def test_hung_sync_agents_of_one_spec_do_not_starve_another(gate: threading.Event) -> None:
    # More hung threads than the loop's default executor has (min(32, cpus + 4)).
    hung_n = min(32, (os.cpu_count() or 1) + 4) + 1
    clock = ManualClock()
    threads: list[str] = []
    entered: list[str] = []

    def hung(ctx: AttemptContext) -> str:
        entered.append(ctx.task.id)
        gate.wait()
        return "late"

    def trivial(ctx: AttemptContext) -> str:
        threads.append(threading.current_thread().name)
        return "done"

    async def main() -> None:
        agents = [
            agent_spec("A", {"slow": 1.0}, FunctionRunner(hung), concurrency=hung_n),
            agent_spec("B", {"fast": 1.0}, FunctionRunner(trivial)),
        ]
        async with Orchestrator(agents, clock=clock) as orch:
            hung_run = await orch.submit(
                [task(f"h{i}", capability="slow", timeout_s=600) for i in range(hung_n)]
            )
            await wait_until(lambda: len(entered) == hung_n)  # each holds a thread
            # Starved, B's call would wait in a queue and time out without starting.
            quick = await (await orch.submit([task("b", capability="fast", timeout_s=30)])).result()
            assert quick.result("b").output == "done", quick.result("b").error
            assert threads[0].startswith("metaagent-B")
            gate.set()
            slow = await hung_run.result()
        assert slow.ok

    # The loop waits up to 1 s of real time for a thread before it jumps the clock.
    run_virtual(main(), clock=clock, autojump_threshold_s=1.0)


def test_a_thread_that_raises_after_its_limit_says_so(gate: threading.Event) -> None:
    clock = ManualClock()

    def hung(ctx: AttemptContext) -> None:
        gate.wait()
        raise ValueError("the socket closed")

    async def main() -> None:
        async with Orchestrator(
            [agent_spec("a", {"code": 1.0}, FunctionRunner(hung))], clock=clock
        ) as orch:
            handle = await orch.submit([task("t", timeout_s=2, max_attempts=1)])
            await asyncio.sleep(3)
            gate.set()
            batch = await handle.result()
        error = batch.result("t").error or ""
        assert re.fullmatch(
            r"timed out after 2s; its thread ran on for \d+\.\ds more and has now raised "
            r"ValueError: the socket closed",
            error,
        ), error

    run_virtual(main(), clock=clock)


@pytest.mark.parametrize("how", ["timed out", "cancelled"])
def test_closing_does_not_wait_for_a_hung_thread(gate: threading.Event, how: str) -> None:
    clock = ManualClock()
    entered = threading.Event()

    def hung(ctx: AttemptContext) -> None:
        entered.set()
        gate.wait()

    async def main() -> None:
        orch = Orchestrator([agent_spec("a", {"code": 1.0}, FunctionRunner(hung))], clock=clock)
        handle = await orch.submit([task("t", timeout_s=2, max_attempts=1)])
        await wait_until(entered.is_set)
        if how == "cancelled":
            await handle.cancel()
            assert list(orch.scheduler.stopping) == [(handle.run_id, "t", 1)]
        else:
            await asyncio.sleep(5)  # past the limit: the attempt waits for its thread
        await orch.aclose()  # returns, though the thread cannot be stopped
        assert handle.done()
        assert not gate.is_set()
        assert orch._attempts.stopping == {}

    run_virtual(main(), clock=clock)


async def test_a_runner_called_directly_uses_its_own_bounded_pool() -> None:
    def where(ctx: AttemptContext) -> str:
        return threading.current_thread().name

    runner = FunctionRunner(where, name="direct", max_threads=1)
    try:
        name = await runner.run(AttemptContext(task("t"), "run", 1, "a", "a"))
    finally:
        runner.close()
    assert isinstance(name, str)
    assert name.startswith("metaagent-direct")
    with pytest.raises(ValueError, match="max_threads must be at least 1"):
        FunctionRunner(where, max_threads=0)
