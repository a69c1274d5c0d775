"""Conflict resolution: exclusive resources never overlap, nothing deadlocks, nothing starves."""

from __future__ import annotations

import asyncio
import heapq
import random
from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from metaagent import (
    AgentSpec,
    AgentTask,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    Scheduler,
    SchedulerConfig,
    TaskState,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from metaagent.agents.base import AttemptContext

RESOURCES = ["repo", "db", "api", "docs", "ci"]


def simulate(tasks: list[AgentTask], seed: int, limits: dict[str, int] | None = None) -> None:
    """Run ``tasks`` on virtual time with random durations; check every resource's holders."""
    rng = random.Random(seed)
    s = Scheduler(SchedulerConfig(max_concurrency=16, resource_limits=limits or {}))
    for i in range(4):
        s.add_agent(
            AgentSpec(f"a{i}", {"code": 0.9}, FunctionRunner(lambda c: None), concurrency=4), 0.0
        )
    s.submit("r", tasks, 0.0)
    holders: dict[str, set[str]] = {r: set() for r in RESOURCES}
    events: list[tuple[float, str, int]] = []
    now = 0.0
    for d in s.dispatch(now):
        heapq.heappush(events, (now + rng.uniform(0.1, 3.0), d.task_id or "", d.attempt))
        for r in s.task("r", d.task_id or "").task.resources:
            holders[r].add(d.task_id or "")
    while events:
        now, tid, attempt = heapq.heappop(events)
        for r in s.task("r", tid).task.resources:
            holders[r].discard(tid)
        s.finish("r", tid, attempt, Outcome.SUCCEEDED, now)
        for d in s.dispatch(now):
            heapq.heappush(events, (now + rng.uniform(0.1, 3.0), d.task_id or "", d.attempt))
            for r in s.task("r", d.task_id or "").task.resources:
                holders[r].add(d.task_id or "")
                cap = (limits or {}).get(r, 1)
                assert len(holders[r]) <= cap, f"{r} held by {sorted(holders[r])} at {now}"
    assert all(s.task("r", t.id).state is TaskState.SUCCEEDED for t in tasks)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sets(st.sampled_from(RESOURCES), max_size=3), min_size=1, max_size=60),
    st.integers(0, 10_000),
)
def test_overlapping_resources_never_run_together_and_all_finish(
    needs: list[set[str]], seed: int
) -> None:
    tasks = [
        AgentTask(f"t{i}", "code", resources=tuple(sorted(n)), priority=i % 3)
        for i, n in enumerate(needs)
    ]
    simulate(tasks, seed)


def test_counting_resources_allow_up_to_their_limit() -> None:
    tasks = [AgentTask(f"t{i}", "code", resources=("db",)) for i in range(40)]
    simulate(tasks, seed=7, limits={"db": 3})


def test_aging_lets_an_old_low_priority_task_overtake_new_high_priority_ones(
    make_spec: Callable[..., AgentSpec],
) -> None:
    # Within a run (runs share slots by fair share), "low" is ready at 0; priority-2 work
    # is released when "busy" ends. Aging is continuous: a level of priority is worth 60 s.
    def run(released_at: float) -> str:
        s = Scheduler(SchedulerConfig(aging_interval_s=60.0))
        s.add_agent(make_spec("solo", {"code": 0.9}), 0.0)
        tasks = [AgentTask("busy", "code", priority=5), AgentTask("low", "code", priority=0)]
        tasks += [AgentTask(f"hi{i}", "code", priority=2, depends_on=("busy",)) for i in range(3)]
        s.submit("r", tasks, 0.0)
        (first,) = s.dispatch(0.0)
        assert first.task_id == "busy"
        s.finish("r", "busy", first.attempt, Outcome.SUCCEEDED, released_at)
        (nxt,) = s.dispatch(released_at)
        return nxt.task_id or ""

    assert run(180.0) == "low"  # 3 minutes of waiting outweigh 2 levels of priority
    assert run(61.0) == "hi0"  # without enough waiting, priority wins


async def test_real_concurrent_tasks_never_share_an_exclusive_resource() -> None:
    holding: dict[str, int] = {}
    peak: dict[str, int] = {}
    parallel = 0
    most = 0

    async def work(ctx: AttemptContext) -> None:
        nonlocal parallel, most
        for r in ctx.task.resources:
            holding[r] = holding.get(r, 0) + 1
            peak[r] = max(peak.get(r, 0), holding[r])
        parallel += 1
        most = max(most, parallel)
        for _ in range(3):
            await asyncio.sleep(0)  # yield so that others would run now if allowed
        parallel -= 1
        for r in ctx.task.resources:
            holding[r] -= 1

    rng = random.Random(3)
    tasks = [
        AgentTask(f"t{i}", "code", resources=tuple(rng.sample(RESOURCES, rng.randint(0, 2))))
        for i in range(200)
    ]
    agents = [AgentSpec("w", {"code": 0.9}, FunctionRunner(work), concurrency=16)]
    async with Orchestrator(agents, OrchestratorConfig(max_concurrency=16)) as orch:
        batch = await orch.execute_batch(tasks)
    assert batch.ok
    assert all(n == 1 for n in peak.values()), peak
    assert most > 1  # tasks without a shared resource did run together
