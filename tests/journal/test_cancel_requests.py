"""Cancel requests and deleting finished runs, on both journals; then an orchestrator applying a
request recorded through another handle (as another process does), and a resume applying one
recorded while nobody executed the run."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import TYPE_CHECKING

import pytest

from metaagent import AgentSpec, AgentTask, AttemptContext, FunctionRunner, Orchestrator
from metaagent.core.tasks import Attempt, Outcome, TaskState
from metaagent.journal import MemoryJournal, Owner, SqliteJournal
from metaagent.journal.migrations import migrate
from metaagent.journal.null import NullJournal
from metaagent.runtime.lease import CANCEL_POLL_S

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from metaagent.journal.memory import MemoryJournal as Memory

NOW = 1_800_000_000.0
DAY = 86400.0


class Wall:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


Pair = tuple["SqliteJournal | Memory", "SqliteJournal | Memory"]


@pytest.fixture(params=["memory", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    """Two handles on one journal: the run's owner, and the process that asks to cancel."""
    wall = Wall()
    if request.param == "memory":
        mem = MemoryJournal(wall=wall)
        yield mem, mem.reopen()
        return
    one = SqliteJournal(tmp_path / "j.db", wall=wall)
    two = SqliteJournal(tmp_path / "j.db", wall=wall)
    yield one, two
    one.close()
    two.close()


def _tasks() -> list[AgentTask]:
    return [AgentTask("a", "code"), AgentTask("b", "code", depends_on=("a",))]


def test_a_request_is_pending_until_marked_done_with_a_flush(pair: Pair) -> None:
    owner, other = pair
    owner.open_run("r1", "wf", _tasks())
    owner.open_run("r2", "wf", _tasks())
    other.request_cancel("r1", ["a", "a"])
    other.request_cancel("r1")
    other.request_cancel("r2", ["b"])
    found = owner.cancel_requests(["r1"])
    assert [(r.run_id, r.task_id) for r in found] == [("r1", "a"), ("r1", None)]
    assert all(r.requested_at == NOW for r in found)
    assert owner.cancel_requests([]) == []
    owner.cancel_done(found)
    owner.flush()
    assert [(r.run_id, r.task_id) for r in other.cancel_requests(["r1", "r2"])] == [("r2", "b")]


def test_a_request_names_a_known_unfinished_run_and_its_tasks(pair: Pair) -> None:
    owner, other = pair
    owner.open_run("r1", "wf", _tasks())
    with pytest.raises(KeyError, match="no run 'nope'"):
        other.request_cancel("nope")
    with pytest.raises(KeyError, match="has no task 'zz'"):
        other.request_cancel("r1", ["a", "zz"])
    assert other.cancel_requests(["r1"]) == []  # nothing of a refused request was recorded
    owner.run_finished("r1")
    owner.flush()
    with pytest.raises(ValueError, match="has finished"):
        other.request_cancel("r1")


def test_a_sub_task_can_be_named(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    journal.open_run("r1", "wf", _tasks())
    journal.add_tasks("r1", [AgentTask("a.1", "code", metadata={"parent": "a"})])
    journal.flush()
    journal.request_cancel("r1", ["a.1"])
    assert [r.task_id for r in journal.cancel_requests(["r1"])] == ["a.1"]
    journal.close()


def _finished_run(journal: SqliteJournal | Memory, run_id: str) -> None:
    journal.open_run(run_id, "wf", _tasks())
    attempt = Attempt(1, "w", "w-1", 0.0, 1.0, Outcome.SUCCEEDED)
    journal.attempt_started(run_id, "a", attempt)
    journal.attempt_finished(run_id, "a", attempt)
    journal.task_finished(run_id, "a", TaskState.SUCCEEDED, {"x": 1}, None, 1.0)
    journal.task_finished(run_id, "b", TaskState.SKIPPED, None, "a", 1.0)
    journal.run_finished(run_id)
    journal.flush()


def test_gc_deletes_old_finished_runs_only(pair: Pair) -> None:
    owner, other = pair
    for run_id in ("one", "two"):
        _finished_run(owner, run_id)
    owner.open_run("open", "wf", _tasks())  # unfinished: never deleted, however old
    owner.request_cancel("open")
    later = time.time() + 10 * DAY  # runs end on the real clock: both are 10 days old then
    assert other.delete_finished(30 * DAY, now=later).runs == []
    dry = other.delete_finished(DAY, now=later, dry_run=True)
    assert sorted(dry.runs) == ["one", "two"]
    assert dry.rows > 2
    assert len(other.list_runs()) == 3  # a dry run deletes nothing
    gone = other.delete_finished(DAY, now=later)
    assert gone == dry
    assert [i.run_id for i in other.list_runs()] == ["open"]
    with pytest.raises(KeyError):
        other.load_run("one")
    assert len(other.cancel_requests(["open"])) == 1


def test_gc_leaves_a_leased_run_alone(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    _finished_run(journal, "r1")
    journal.acquire("r1", Owner.here())
    assert journal.delete_finished(0.0, now=NOW * 2).runs == []
    journal.close()


def test_gc_deletes_every_row_of_the_run_in_every_table(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    _finished_run(journal, "r1")
    journal.add_tasks("r1", [AgentTask("a.1", "code", metadata={"parent": "a"})])
    gone = journal.delete_finished(0.0, now=NOW * 2)
    journal.close()
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    left = {
        t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE run_id = 'r1'").fetchone()[0]
        for t in tables
        if t != "stats" and not t.startswith("sqlite_")  # SQLite's own (AUTOINCREMENT)
    }
    assert gone.runs == ["r1"]
    assert set(left.values()) == {0}, left


def test_a_terminal_state_is_still_final_while_its_run_exists(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = SqliteJournal(path)
    _finished_run(journal, "r1")
    journal.close()
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="final"):
        conn.execute("DELETE FROM results WHERE run_id = 'r1'")
    with pytest.raises(sqlite3.IntegrityError, match="final"):
        conn.execute("UPDATE results SET state = 'failed' WHERE run_id = 'r1'")


def test_a_version_6_file_gains_the_table_of_requests(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, upto=6) == 6
    conn.close()
    journal = SqliteJournal(path)
    journal.open_run("r1", "wf", _tasks())
    journal.request_cancel("r1")
    assert len(journal.cancel_requests(["r1"])) == 1
    journal.close()


def test_the_null_journal_keeps_no_requests() -> None:
    null = NullJournal()
    null.request_cancel("r1")
    assert null.cancel_requests(["r1"]) == []
    null.cancel_done([])
    assert null.delete_finished(0.0).runs == []


# --- an orchestrator applying requests ---------------------------------------------------------


def _gated() -> tuple[asyncio.Event, asyncio.Event, list[str], AgentSpec]:
    started, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def body(ctx: AttemptContext) -> str:
        ran.append(ctx.task.id)
        started.set()
        await release.wait()
        return ctx.task.id

    return started, release, ran, AgentSpec("w", {"code": 0.9}, FunctionRunner(body))


def _three() -> list[AgentTask]:
    return [*_tasks(), AgentTask("c", "code")]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_the_owner_applies_a_request_from_another_handle(kind: str, tmp_path: Path) -> None:
    journal = MemoryJournal() if kind == "memory" else SqliteJournal(tmp_path / "j.db")
    other = journal.reopen() if isinstance(journal, MemoryJournal) else SqliteJournal(journal.path)
    started, release, _, agent = _gated()
    async with Orchestrator([agent], journal=journal) as orch:
        handle = await orch.submit(_three(), name="wf")
        await started.wait()
        other.request_cancel(handle.run_id, ["a"])
        loop = asyncio.get_running_loop()
        asked = loop.time()
        while orch.task_states(handle.run_id)["b"] is not TaskState.SKIPPED:
            assert loop.time() - asked < 5 * CANCEL_POLL_S, "the request was not applied"
            await asyncio.sleep(0.01)
        states = orch.task_states(handle.run_id)
        assert states["a"] is TaskState.CANCELLED
        assert states["c"] is not TaskState.CANCELLED  # only the task named
        release.set()
        result = await handle.result()
    assert {r.task_id: r.state for r in result.results}["c"] is TaskState.SUCCEEDED
    assert other.cancel_requests([handle.run_id]) == []  # marked done with the flush
    other.close()
    journal.close()


async def test_a_resume_applies_a_request_recorded_while_nobody_owned_the_run(
    tmp_path: Path,
) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    journal.open_run("r1", "wf", _three())  # journaled, owned by nobody
    journal.request_cancel("r1")
    agent = _gated()[3]
    async with Orchestrator([agent], journal=journal) as orch:
        handle = await orch.resume("r1")
        result = await asyncio.wait_for(handle.result(), 5)
    assert {r.state for r in result.results} <= {TaskState.CANCELLED, TaskState.SKIPPED}
    assert journal.cancel_requests(["r1"]) == []
    assert journal.load_run("r1").info.finished
    journal.close()
