"""Task durations of earlier runs of the same workflow, read back from a real journal."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from metaagent import (
    AgentSpec,
    AgentTask,
    AttemptContext,
    FunctionRunner,
    Orchestrator,
    Scheduler,
)
from metaagent.clock import ManualClock
from metaagent.journal.history import task_durations
from metaagent.journal.sqlite import SqliteJournal
from metaagent.runtime.virtual import run_virtual
from metaagent.testing import agent_spec

if TYPE_CHECKING:
    from pathlib import Path


def test_durations_of_a_workflows_earlier_runs_rank_the_next(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    clock = ManualClock()

    async def body(ctx: AttemptContext) -> str:
        await asyncio.sleep(9.0 if ctx.task.id == "slow" else 1.0)
        return "ok"

    async def main() -> None:
        journal = SqliteJournal(path)
        spec = AgentSpec("w", {"code": 0.9}, FunctionRunner(body), concurrency=2)
        async with Orchestrator([spec], journal=journal, clock=clock) as orch:
            for _ in range(2):
                tasks = [AgentTask("slow", "code"), AgentTask("quick", "code")]
                await (await orch.submit(tasks, key="wf-1")).result()
        journal.close()

    run_virtual(main(), clock=clock)
    seen = task_durations(path, "wf-1")
    assert set(seen) == {"slow", "quick"}
    assert seen["slow"] > seen["quick"]
    assert task_durations(path, "other") == {}
    assert task_durations(tmp_path / "missing.db", "wf-1") == {}
    # The scheduler ranks by them when a task declares no estimate_s.
    s = Scheduler()
    s.add_agent(agent_spec("w", {"code": 0.9}), 0.0)
    run = s.prepare("r", [AgentTask("quick", "code"), AgentTask("slow", "code")], 0.0,
                    history=seen)  # fmt: skip
    assert run.tasks["slow"].rank > run.tasks["quick"].rank
