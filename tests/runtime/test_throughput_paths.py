"""The per-task fast paths keep what they replaced: a large new run's records are frozen out of
the collector only while it runs (one freeze while any is held), and the batch figures count
states in their order and peaks as before."""

from __future__ import annotations

import gc

import pytest

from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator, OrchestratorConfig
from metaagent.core.tasks import Attempt, Outcome, TaskResult, TaskState
from metaagent.gcpause import FREEZE_AT, Freeze


def test_a_new_run_freezes_only_when_large_and_only_once_while_held() -> None:
    frozen = Freeze()
    try:
        frozen.hold_new("small", FREEZE_AT - 1)
        assert gc.get_freeze_count() == 0  # a small run's records cost the collector little
        frozen.hold_new("big", FREEZE_AT)
        first = gc.get_freeze_count()
        assert first > 0
        made = [[i] for i in range(1000)]  # tracked objects made while it is held
        frozen.hold_new("other", FREEZE_AT)
        assert gc.get_freeze_count() == first  # no second freeze: what came since stays out
        assert made
        frozen.release("big")
        assert gc.get_freeze_count() == first  # "other" still holds
        frozen.release("other")
        assert gc.get_freeze_count() == 0
    finally:
        frozen.release()
        gc.unfreeze()


@pytest.mark.timeout(60)
async def test_a_large_submitted_run_is_frozen_until_it_ends() -> None:
    seen: list[int] = []

    async def work(_: object) -> int:
        seen.append(gc.get_freeze_count())
        return 1

    spec = AgentSpec("w", {"work": 1.0}, FunctionRunner(work), concurrency=8)
    config = OrchestratorConfig(max_concurrency=8, max_queued=FREEZE_AT)
    async with Orchestrator([spec], config) as orch:
        small = await orch.execute_batch([AgentTask("s", "work")])
        assert small.ok
        assert seen == [0]  # one task: nothing frozen
        tasks = [AgentTask(f"t{i}", "work") for i in range(FREEZE_AT)]
        batch = await orch.execute_batch(tasks)
        assert batch.ok
        assert min(seen[1:]) > 0  # every attempt of the large run ran with its records frozen
        assert gc.get_freeze_count() == 0  # released when the run ended


def test_counts_keep_every_terminal_state_then_the_others_in_order_of_first_appearance() -> None:
    def att(start: float, end: float | None) -> Attempt:
        return Attempt(1, "x", "x-1", start, end, None if end is None else Outcome.SUCCEEDED)

    results = [
        TaskResult("a", TaskState.RUNNING, attempts=[att(0.0, None)]),
        TaskResult("b", TaskState.SUCCEEDED, attempts=[att(0.0, 1.0)], finished_at=1.0),
        TaskResult("c", TaskState.PENDING),
        TaskResult("d", TaskState.READY),
        TaskResult("e", TaskState.RUNNING, attempts=[att(0.5, None)]),
        TaskResult("f", TaskState.SUCCEEDED, attempts=[att(1.0, 2.0)], finished_at=2.0),
    ]
    batch = Orchestrator.aggregate_results(results)
    assert list(batch.counts.items()) == [
        ("succeeded", 2), ("failed", 0), ("cancelled", 0), ("skipped", 0),
        ("running", 2), ("pending", 1), ("ready", 1),
    ]  # fmt: skip
    # Attempts still running have no end: only [0,1] and [1,2] count, which do not overlap.
    assert batch.peak_parallelism == 1
    assert batch.total_run_s == 2.0
    assert batch.makespan_s == 2.0
    assert batch.dispatches_per_task == pytest.approx(4 / 6)
