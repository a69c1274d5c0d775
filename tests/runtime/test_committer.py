"""The journal's writer thread: a locked SQLite file delays commits, never the loop; nothing is
started before the journal has it; the same runs come out as with every flush on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from typing import TYPE_CHECKING

import pytest

from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator, OrchestratorConfig
from metaagent.journal import SqliteJournal
from metaagent.journal.base import JournalError

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.agents.base import AttemptContext


def chains(n: int, length: int) -> list[AgentTask]:
    return [
        AgentTask(f"c{c}-{i}", "work", depends_on=(f"c{c}-{i - 1}",) if i else ())
        for c in range(n)
        for i in range(length)
    ]


def journaled_attempts(path: Path) -> set[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return {(t, n) for t, n in conn.execute("SELECT task_id, number FROM attempts")}
    finally:
        conn.close()


@pytest.mark.timeout(60)
async def test_the_loop_goes_on_while_another_writer_holds_the_journal(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    executed: list[tuple[str, int]] = []
    locked = threading.Event()  # the other writer holds the lock
    progressed = threading.Event()  # the loop did its own work meanwhile
    outcome: dict[str, bool] = {}

    async def work(ctx: AttemptContext) -> str:
        executed.append((ctx.task.id, ctx.attempt))
        if ctx.task.id == "c0-3" and not locked.is_set():
            start_locker()
            await asyncio.to_thread(locked.wait, 10)
        await asyncio.sleep(0.001)
        return ctx.task.id

    def locker() -> None:
        conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            # Held until the loop shows it was not blocked (or, if it were, 20 s later).
            outcome["loop_went_on"] = progressed.wait(20)
            conn.execute("COMMIT")
        finally:
            conn.close()

    threads: list[threading.Thread] = []

    def start_locker() -> None:
        t = threading.Thread(target=locker, daemon=True)
        threads.append(t)
        t.start()

    async def probe() -> None:
        await asyncio.to_thread(locked.wait, 30)
        for _ in range(20):  # loop timers fire while the file is locked
            await asyncio.sleep(0.005)
        progressed.set()

    journal = SqliteJournal(db)
    spec = AgentSpec("w", {"work": 1.0}, FunctionRunner(work), concurrency=4)
    async with Orchestrator([spec], OrchestratorConfig(), journal=journal) as orch:
        watcher = asyncio.ensure_future(probe())
        handle = await orch.submit(chains(4, 10), name="locked")
        batch = await handle.result()
        await watcher
    journal.close()
    for t in threads:
        t.join(5)

    assert outcome == {"loop_went_on": True}
    assert {k: n for k, n in batch.counts.items() if n} == {"succeeded": 40}
    # Every attempt an agent ran was journaled (it started only once the journal had it), and
    # none ran twice.
    assert len(executed) == len(set(executed)) == 40
    assert set(executed) <= journaled_attempts(db)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("thread", [True, False])
async def test_the_same_run_with_and_without_the_writer_thread(
    tmp_path: Path, thread: bool
) -> None:
    db = tmp_path / f"{thread}.db"

    async def work(ctx: AttemptContext) -> str:
        return ctx.task.id.upper()

    journal = SqliteJournal(db)
    spec = AgentSpec("w", {"work": 1.0}, FunctionRunner(work), concurrency=3)
    config = OrchestratorConfig(journal_thread=thread)
    async with Orchestrator([spec], config, journal=journal) as orch:
        batch = await orch.execute_batch(chains(3, 5), name="same")
    stored = journal.load_run(batch.run_id)
    journal.close()
    assert {k: n for k, n in batch.counts.items() if n} == {"succeeded": 15}
    assert {tid: r.output for tid, r in stored.results.items()} == {
        f"c{c}-{i}": f"C{c}-{i}" for c in range(3) for i in range(5)
    }
    assert stored.info.finished


@pytest.mark.timeout(60)
async def test_a_commit_that_fails_on_the_writer_thread_fails_the_runs(tmp_path: Path) -> None:
    calls = {"n": 0}

    def fault(label: str) -> None:
        if label == "flush":
            calls["n"] += 1
            if calls["n"] >= 3:
                raise sqlite3.DatabaseError("database disk image is malformed")

    started: list[str] = []

    async def work(ctx: AttemptContext) -> None:
        started.append(ctx.task.id)

    journal = SqliteJournal(tmp_path / "j.db", fault=fault)
    spec = AgentSpec("w", {"work": 1.0}, FunctionRunner(work), concurrency=1)
    async with Orchestrator([spec], OrchestratorConfig(), journal=journal) as orch:
        handle = await orch.submit(chains(1, 10), name="failing")
        with pytest.raises(JournalError, match="malformed"):
            await handle.result()
    # Nothing ran after the commit that failed: only the attempts of commits that landed.
    assert 0 < len(started) < 10
    assert len(started) <= len(journaled_attempts(tmp_path / "j.db"))
    with contextlib.suppress(JournalError):  # the fault is still there
        journal.close()


@pytest.mark.timeout(60)
async def test_a_new_run_of_a_workflow_is_ranked_by_its_earlier_runs(tmp_path: Path) -> None:
    """The durations of earlier finished runs with the same key reach the scheduler."""
    from metaagent.runtime.journaled import durations_of

    async def work(ctx: AttemptContext) -> None:
        await asyncio.sleep(0.01 if ctx.task.id.startswith("c0") else 0.0)

    journal = SqliteJournal(tmp_path / "j.db")
    spec = AgentSpec("w", {"work": 1.0}, FunctionRunner(work), concurrency=2)
    assert durations_of(journal, "wf:k") == {}
    async with Orchestrator([spec], OrchestratorConfig(), journal=journal) as orch:
        first = await orch.submit(chains(2, 3), name="first", key="wf:k")
        await first.result()
        learned = durations_of(journal, "wf:k")
        assert set(learned) == {f"c{c}-{i}" for c in range(2) for i in range(3)}
        assert min(learned[f"c0-{i}"] for i in range(3)) > max(learned[f"c1-{i}"] for i in range(3))
        second = await orch.submit(chains(2, 3), name="second", key="wf:k")
        await second.result()
    journal.close()
    assert durations_of(journal, None) == {}
