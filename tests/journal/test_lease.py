"""Runs have one owner: the lease of a run in the journal, and every write fenced by it.

The contract on both journals (two handles on one store, as two processes open one file, on a
wall clock the test moves); two orchestrators on one journal; then real processes on one SQLite
file: two that start the same workflow at once, a resume refused while the owner lives and
taken over once it was killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from metaagent import AgentSpec, AgentTask, AttemptContext, FunctionRunner, Orchestrator
from metaagent.core.tasks import Attempt, TaskState
from metaagent.errors import RunOwned
from metaagent.journal import (
    LEASE_TTL_S,
    JournalError,
    KnownRun,
    MemoryJournal,
    Owner,
    SqliteJournal,
)
from metaagent.journal.leases import this_node

if TYPE_CHECKING:
    from collections.abc import Iterator

    from metaagent.journal.memory import MemoryJournal as Memory

WORKER = Path(__file__).resolve().parent / "lease_worker.py"
ROOT = Path(__file__).resolve().parents[2]

# Owners on another node: only the expiry of their lease lets a run go (no pid check).
A = Owner("aaaa", 101, "host-a", "elsewhere")
B = Owner("bbbb", 202, "host-b", "elsewhere")


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


Pair = tuple["SqliteJournal | Memory", "SqliteJournal | Memory", Wall]


@pytest.fixture(params=["memory", "sqlite"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    """Two handles on one journal, as two processes each open it."""
    wall = Wall()
    if request.param == "memory":
        mem = MemoryJournal(wall=wall)
        yield mem, mem.reopen(), wall
        return
    one = SqliteJournal(tmp_path / "j.db", wall=wall)
    two = SqliteJournal(tmp_path / "j.db", wall=wall)
    yield one, two, wall
    one.close()
    two.close()


def _tasks() -> list[AgentTask]:
    return [AgentTask("a", "code"), AgentTask("b", "code")]


def test_a_live_lease_refuses_others_and_is_renewed_and_released(pair: Pair) -> None:
    one, two, wall = pair
    one.open_run("r1", "wf", _tasks(), key="wf", owner=A)
    lease = two.lease("r1")
    assert lease is not None
    assert lease.owner == A
    assert lease.since == wall.t
    with pytest.raises(RunOwned, match=r"owner aaaa \(pid 101 on host-a\) since") as refused:
        two.acquire("r1", B)
    assert refused.value.run_id == "r1"
    assert "pid 101" in refused.value.owner
    wall.t += LEASE_TTL_S - 1
    one.renew(A)  # a heartbeat: the lease lasts another LEASE_TTL_S from now
    wall.t += 2
    with pytest.raises(RunOwned):
        two.acquire("r1", B)
    one.release(A)
    assert two.lease("r1") is None
    assert two.acquire("r1", B).owner == B  # at once: nobody holds it


def test_an_expired_lease_is_taken_over_and_the_stale_owner_is_fenced(pair: Pair) -> None:
    one, two, wall = pair
    one.open_run("r1", "wf", _tasks(), owner=A)
    one.attempt_started("r1", "a", Attempt(1, "x", "x", 0.0))
    one.flush()
    wall.t += LEASE_TTL_S + 0.5  # A stopped renewing (it hangs, or it crashed elsewhere)
    taken = two.acquire("r1", B)
    assert taken.owner == B
    assert taken.since == wall.t
    # A wakes up and writes what it did meanwhile: nothing of it is written.
    one.attempt_finished("r1", "a", Attempt(1, "x", "x", 0.0, 1.0))
    one.task_finished("r1", "a", TaskState.SUCCEEDED, "twice", None, 1.0)
    with pytest.raises(JournalError, match=r"taken over by owner bbbb \(pid 202 on host-b\)"):
        one.flush()
    one.task_finished("r1", "b", TaskState.SUCCEEDED, "again", None, 1.0)
    with pytest.raises(JournalError, match="bbbb"):
        one.flush()  # it can never write the run again
    one.renew(A)  # nothing left to renew: the lease is gone from this handle
    stored = two.load_run("r1")
    assert stored.results == {}
    assert [a.finished_at for a in stored.attempts["a"]] == [None]
    # The new owner writes on.
    two.task_finished("r1", "a", TaskState.SUCCEEDED, "once", None, 2.0)
    two.flush()
    assert two.load_run("r1").results["a"].output == "once"


def test_a_renewal_finds_a_lease_taken_over(pair: Pair) -> None:
    one, two, wall = pair
    one.open_run("r1", "wf", _tasks(), owner=A)
    wall.t += LEASE_TTL_S + 0.5
    two.acquire("r1", B)
    with pytest.raises(JournalError, match="taken over by owner bbbb"):
        one.renew(A)
    one.task_finished("r1", "a", TaskState.SUCCEEDED, 1, None, 1.0)
    with pytest.raises(JournalError, match="bbbb"):
        one.flush()


def test_an_expired_lease_nobody_took_is_renewed_by_the_next_flush(pair: Pair) -> None:
    one, two, wall = pair
    one.open_run("r1", "wf", _tasks(), owner=A)
    wall.t += LEASE_TTL_S + 5
    one.task_finished("r1", "a", TaskState.SUCCEEDED, 1, None, 1.0)
    one.flush()  # nobody executed it meanwhile: the flush renews the lease
    lease = two.lease("r1")
    assert lease is not None
    assert lease.owner == A
    assert lease.expires_at == wall.t + LEASE_TTL_S
    with pytest.raises(RunOwned):
        two.acquire("r1", B)


def test_a_run_written_directly_is_fenced_once_someone_holds_it(pair: Pair) -> None:
    one, two, _ = pair
    one.open_run("r1", "wf", _tasks())  # no owner: no lease
    one.task_finished("r1", "a", TaskState.SUCCEEDED, 1, None, 1.0)
    one.flush()
    two.acquire("r1", B)
    one.task_finished("r1", "b", TaskState.SUCCEEDED, 2, None, 1.0)
    with pytest.raises(JournalError, match="bbbb"):
        one.flush()
    assert "b" not in two.load_run("r1").results


def test_opening_a_workflow_another_owner_opened_meanwhile_finds_its_run(pair: Pair) -> None:
    one, two, _ = pair
    one.open_run("r1", "wf", _tasks(), key="wf", owner=A)
    with pytest.raises(KnownRun) as known:
        two.open_run("r2", "wf", _tasks(), key="wf", owner=B)
    assert known.value.run_id == "r1"
    keyed = [AgentTask("a", "code", key="k-a")]
    one.open_run("r3", "keyed", keyed, owner=A)
    with pytest.raises(KnownRun) as known:
        two.open_run("r4", "keyed", keyed, owner=B)
    assert known.value.run_id == "r3"
    assert {r.run_id for r in two.list_runs()} == {"r1", "r3"}


def test_finishing_a_run_releases_its_lease(pair: Pair) -> None:
    one, two, _ = pair
    one.open_run("r1", "wf", _tasks(), owner=A)
    one.run_finished("r1")
    one.flush()
    assert two.lease("r1") is None


def test_a_dead_owner_on_this_node_is_taken_over_at_once(pair: Pair, tmp_path: Path) -> None:
    one, two, _ = pair
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: no process has its pid now
    dead = Owner("dead", child.pid, "here", this_node())
    one.open_run("r1", "wf", _tasks(), owner=dead)
    assert two.acquire("r1", B).owner == B


# --- orchestrators ---------------------------------------------------------------------------


def _blocking() -> tuple[asyncio.Event, asyncio.Event, list[str], AgentSpec]:
    started, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def body(ctx: AttemptContext) -> str:
        ran.append(ctx.task.id)
        started.set()
        await release.wait()
        return ctx.task.id

    return started, release, ran, AgentSpec("w", {"code": 0.9}, FunctionRunner(body))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_two_orchestrators_on_one_journal_do_not_run_one_workflow_twice(
    kind: str, tmp_path: Path
) -> None:
    journal = MemoryJournal() if kind == "memory" else SqliteJournal(tmp_path / "j.db")
    started, release, ran, agent = _blocking()
    async with Orchestrator([agent], journal=journal) as first:
        handle = await first.submit(_tasks(), name="wf", key="wf")
        await started.wait()
        async with Orchestrator([agent], journal=journal) as second:
            with pytest.raises(RunOwned, match=f"pid {os.getpid()}"):
                await second.submit(_tasks(), name="wf", key="wf")
            with pytest.raises(RunOwned):
                await second.resume(handle.run_id)
        release.set()
        assert (await handle.result()).ok
    assert sorted(ran) == ["a", "b"]
    assert journal.lease(handle.run_id) is None  # released with the run's end
    journal.close()


async def test_closing_an_orchestrator_releases_its_unfinished_runs(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    started, _, _, agent = _blocking()
    async with Orchestrator([agent], journal=journal) as first:
        handle = await first.submit(_tasks(), name="wf", key="wf")
        await started.wait()
        assert journal.lease(handle.run_id) is not None
    assert journal.lease(handle.run_id) is None
    started.clear()
    async with Orchestrator([agent], journal=journal) as second:
        again = await second.submit(_tasks(), name="wf", key="wf")
        assert again.run_id == handle.run_id  # resumed at once: nobody holds it
        await started.wait()
    journal.close()


async def test_an_orchestrator_that_lost_its_lease_fails_its_runs(tmp_path: Path) -> None:
    wall = Wall()
    path = tmp_path / "j.db"
    journal = SqliteJournal(path, wall=wall)
    started, release, _, agent = _blocking()
    async with Orchestrator([agent], journal=journal) as orch:
        handle = await orch.submit(_tasks(), name="wf", key="wf")
        await started.wait()
        wall.t += LEASE_TTL_S + 1
        other = SqliteJournal(path, wall=wall)
        other.acquire(handle.run_id, B)
        release.set()
        with pytest.raises(JournalError, match="taken over by owner bbbb"):
            await handle.result()
    journal.close()
    assert other.load_run(handle.run_id).results == {}
    other.close()


# --- real processes on one file --------------------------------------------------------------


def _worker(db: Path, ledger: Path, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, str(WORKER), "--db", str(db), "--ledger", str(ledger), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _lines(ledger: Path) -> list[dict[str, object]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines()]


def _wait_for(ledger: Path, key: str, proc: subprocess.Popen[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(key in rec for rec in _lines(ledger)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the worker did not get there"
        time.sleep(0.02)


def test_two_processes_starting_one_workflow_at_once_run_each_task_once(tmp_path: Path) -> None:
    db, n, rounds = tmp_path / "race.db", 12, 20
    SqliteJournal(db).close()  # the file exists (schema, WAL): the race is over runs, not creation
    refused = 0
    deadline = time.monotonic() + 90
    for r in range(rounds):
        ledger = tmp_path / f"ledger-{r}.jsonl"
        start = time.time() + 0.6  # both interpreters are up by then
        args = ("--round", str(r), "--tasks", str(n), "--start-at", f"{start:.3f}")
        procs = [_worker(db, ledger, *args) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        codes = sorted(p.returncode for p in procs)
        ran = [rec["t"] for rec in _lines(ledger) if "t" in rec]
        assert sorted(ran) == sorted(f"t{i}" for i in range(n)), (r, ran, outs)
        assert len({rec["pid"] for rec in _lines(ledger) if "t" in rec}) == 1
        assert codes in ([0, 2], [0, 0]), (r, outs)  # 0, 0: the loser found the run finished
        for p, (_, err) in zip(procs, outs, strict=True):
            if p.returncode == 2:
                refused += 1
                assert "is being executed by another process: owner" in err
                assert "UNIQUE constraint" not in err
        assert time.monotonic() < deadline, f"{r + 1} rounds took too long"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE finished_at IS NULL").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (rounds,)
    assert conn.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
    conn.close()
    assert refused >= rounds // 2, f"only {refused} of {rounds} rounds raced"


def test_a_live_run_is_not_resumed_and_a_killed_one_is_taken_over(tmp_path: Path) -> None:
    db, ledger = tmp_path / "j.db", tmp_path / "ledger.jsonl"
    owner = _worker(db, ledger, "--tasks", "40", "--slots", "2", "--work-ms", "100")
    _wait_for(ledger, "ev", owner)
    run_id = str(next(rec["run"] for rec in _lines(ledger) if "ev" in rec))
    second = _worker(db, ledger, "--resume", run_id)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2, err
    assert f"pid {owner.pid} on" in err
    assert "since" in err
    assert owner.poll() is None  # the owner goes on, untouched
    owner.send_signal(signal.SIGKILL)
    owner.communicate()  # reaped: its pid names no process now
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT pid FROM leases").fetchall() == [(owner.pid,)]  # left behind
    # The lease as if it came from another machine: only its expiry lets the run go.
    conn.execute("UPDATE leases SET node = 'elsewhere'")
    conn.commit()
    refused = _worker(db, ledger, "--resume", run_id)
    assert refused.communicate(timeout=60)[0] == ""
    assert refused.returncode == 2
    (expires,) = conn.execute("SELECT expires_at FROM leases").fetchone()
    conn.close()
    while time.time() <= expires:  # the lease runs out on the wall clock
        time.sleep(0.05)
    taker = _worker(db, ledger, "--resume", run_id)
    _, err = taker.communicate(timeout=60)
    assert taker.returncode == 0, err
    ran = [rec for rec in _lines(ledger) if "t" in rec]
    by_taker = {str(rec["t"]) for rec in ran if rec["pid"] == taker.pid}
    by_owner = {str(rec["t"]) for rec in ran if rec["pid"] == owner.pid}
    assert by_owner | by_taker == {f"t{i}" for i in range(40)}
    assert len(by_owner & by_taker) <= 2  # only what was in flight at the kill ran again
    stored = SqliteJournal(db).load_run(run_id)
    assert stored.info.finished
    assert len(stored.results) == 40
