"""The orchestrator process of the ``recovery`` benchmark, in one of two roles.

``build DB N``: run a layered DAG of ``N`` no-op tasks on a SQLite journal. The benchmark sets
``METAAGENT_CRASH_AT`` so that this process kills itself halfway, leaving an unfinished run.

``resume DB``: the restart after that crash. It resumes the run from the journal and, at the
first dispatch (the first attempt's body starting), takes a stamp; once the run's settled tasks
have been read back as well (the lazy part of the restore), it prints one JSON line of
``time.monotonic()`` stamps and exits. The monotonic clock is shared by every process on the
machine, so the benchmark can measure from the moment it started this process.
"""

from __future__ import annotations

import time

T_MAIN = time.monotonic()

import asyncio  # noqa: E402 - the stamp above is taken before any import
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from metaagent import (  # noqa: E402
    AgentSpec,
    AgentTask,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
)
from metaagent.journal import SqliteJournal, StoredRun  # noqa: E402

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext

T_IMPORTED = time.monotonic()
RUN_KEY = "bench-recovery"
CAPABILITY = "noop"
LAYERS = 10
stamps: dict[str, float] = {"main": T_MAIN, "imported": T_IMPORTED}


def layered(n: int) -> list[AgentTask]:
    """``LAYERS`` layers; each task depends on two tasks of the layer above."""
    width = max(1, n // LAYERS)
    tasks: list[AgentTask] = []
    for k in range(LAYERS):
        for i in range(width):
            above = (f"l{k - 1}.{i}", f"l{k - 1}.{(i + 1) % width}")
            deps = tuple(dict.fromkeys(above)) if k else ()
            tasks.append(AgentTask(f"l{k}.{i}", CAPABILITY, depends_on=deps))
    return tasks


async def noop(ctx: AttemptContext) -> object:
    return {"task": ctx.task.id}


RESUMED: list[Orchestrator] = []  # the orchestrator of ``resume``


async def first_dispatch(ctx: AttemptContext) -> object:
    if "first_dispatch" in stamps:
        await asyncio.sleep(60)  # only the first attempt reports; the process ends before
    stamps["first_dispatch"] = time.monotonic()
    # The settled tasks of the run are read back after the first dispatch turn: stamp when
    # the run is whole again too.
    run = RESUMED[0].scheduler.runs[ctx.run_id]
    while run.unread is not None:  # noqa: ASYNC110 - no event to wait on: the bench polls
        await asyncio.sleep(0.001)
    stamps["whole"] = time.monotonic()
    sys.stdout.write(json.dumps(stamps) + "\n")
    sys.stdout.flush()
    os._exit(0)


class TimedJournal(SqliteJournal):
    """Stamps the end of reading the run back, to split recovery into its parts."""

    def load_run(self, run_id: str, *, decisions: bool = True, lazy: bool = False) -> StoredRun:
        stamps["load_start"] = time.monotonic()
        stored = super().load_run(run_id, decisions=decisions, lazy=lazy)
        stamps["loaded"] = time.monotonic()
        return stored


def agents(fn: object) -> list[AgentSpec]:
    runner = FunctionRunner(fn)  # type: ignore[arg-type]
    return [AgentSpec(f"noop-{i}", {CAPABILITY: 1.0}, runner, concurrency=64) for i in range(4)]


async def build(db: str, n: int) -> None:
    journal = SqliteJournal(db)
    config = OrchestratorConfig(max_concurrency=256, max_queued=n)
    async with Orchestrator(agents(noop), config, journal=journal) as orch:
        handle = await orch.submit(layered(n), name="recovery", key=RUN_KEY)
        await handle.result()
    journal.close()


async def resume(db: str) -> None:
    journal = TimedJournal(db)
    stamps["opened"] = time.monotonic()
    run_id = journal.find_unfinished(RUN_KEY)
    if run_id is None:
        raise SystemExit(f"no unfinished run in {db}")
    config = OrchestratorConfig(max_concurrency=256, max_queued=10_000_000)
    orch = Orchestrator(agents(first_dispatch), config, journal=journal)
    RESUMED.append(orch)
    await orch.resume(run_id)
    stamps["resumed"] = time.monotonic()
    await asyncio.sleep(60)  # the first dispatch ends the process long before this
    raise SystemExit("no dispatch within 60 s")


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"] and len(argv) == 3:
        asyncio.run(build(argv[1], int(argv[2])))
        return 0
    if argv[:1] == ["resume"] and len(argv) == 2:
        asyncio.run(resume(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
