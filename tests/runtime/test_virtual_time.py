"""The runtime on virtual time: a ``ManualClock`` drives retries, back-offs and timeouts end to
end, through ``run_virtual``'s loop (the loop's timers wait on the injected clock)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    FunctionRunner,
    ManualClock,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryPolicy,
    TaskState,
)
from metaagent.runtime.virtual import VirtualTimeLoop, run_virtual

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext

HOUR = 3600.0


def _config(**retry: float) -> OrchestratorConfig:
    return OrchestratorConfig(retry=RetryPolicy(jitter=0.0, **retry))


def test_a_batch_with_retries_completes_on_a_manual_clock() -> None:
    clock = ManualClock(1000.0)
    tries: dict[str, int] = {}

    async def flaky(ctx: AttemptContext) -> str:
        tries[ctx.task.id] = tries.get(ctx.task.id, 0) + 1
        if tries[ctx.task.id] < 3:
            raise RuntimeError(f"try {tries[ctx.task.id]} fails")
        return f"{ctx.task.id} done"

    async def main() -> None:
        agent = AgentSpec("a", {"code": 0.9}, FunctionRunner(flaky), concurrency=2)
        async with Orchestrator([agent], _config(base_s=HOUR, max_s=4 * HOUR), clock=clock) as o:
            batch = await o.execute_batch(
                [AgentTask("x", "code", max_attempts=3), AgentTask("y", "code", depends_on=("x",))]
            )
        assert batch.ok
        x = batch.result("x")
        assert [a.outcome for a in x.attempts] == [Outcome.ERROR, Outcome.ERROR, Outcome.SUCCEEDED]
        # The back-offs (1 h, then 2 h) passed on the clock, and the report measures them.
        assert x.attempts[1].started_at - x.attempts[0].finished_at == pytest.approx(HOUR)  # type: ignore[operator]
        assert x.attempts[2].started_at - x.attempts[1].finished_at == pytest.approx(2 * HOUR)  # type: ignore[operator]
        assert batch.result("y").state is TaskState.SUCCEEDED

    run_virtual(main(), clock=clock)
    assert clock.now() == pytest.approx(1000.0 + 6 * HOUR)  # y fails twice too: 3 h more


def test_a_timeout_passes_in_virtual_time_and_the_retry_succeeds() -> None:
    clock = ManualClock()
    slow_first = {"n": 0}

    async def body(ctx: AttemptContext) -> str:
        slow_first["n"] += 1
        if slow_first["n"] == 1:
            await asyncio.sleep(10 * HOUR)  # far past the task's limit
        return "ok"

    async def main() -> None:
        agent = AgentSpec("a", {"code": 0.9}, FunctionRunner(body))
        async with Orchestrator([agent], _config(base_s=1.0), clock=clock) as orch:
            batch = await orch.execute_batch(
                [AgentTask("t", "code", timeout_s=HOUR, max_attempts=2)]
            )
        attempts = batch.result("t").attempts
        assert [a.outcome for a in attempts] == [Outcome.TIMEOUT, Outcome.SUCCEEDED]
        assert attempts[0].duration_s == pytest.approx(HOUR)

    run_virtual(main(), clock=clock)
    assert clock.now() == pytest.approx(HOUR + 1.0)


def test_the_loop_keeps_the_clock_time_and_never_goes_back() -> None:
    clock = ManualClock(5.0)
    seen: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        seen.append(loop.time())
        await asyncio.sleep(30.0)
        seen.append(loop.time())
        await asyncio.gather(asyncio.sleep(5.0), asyncio.sleep(1.0))
        seen.append(clock.now())

    run_virtual(main(), clock=clock)
    assert seen == [5.0, pytest.approx(35.0), pytest.approx(40.0)]


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="autojump_threshold_s"):
        VirtualTimeLoop(ManualClock(), autojump_threshold_s=-1.0)
