"""Leftovers of an orchestrator killed with ``kill -9``: what its agents started in the
background outlives it (parent 1), and the next orchestrator on the journal kills it before it
dispatches anything; live owners' processes and unrelated processes are never touched."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator
from metaagent.agents.process import SPAWNER_ENV
from metaagent.journal import SqliteJournal
from metaagent.journal.leases import Owner
from metaagent.runtime.reaper import dead_spawners, reap_leftovers
from metaagent.testing import wait_until

CLI = [sys.executable, "-m", "metaagent.cli"]


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def workflow(tmp: Path) -> Path:
    """One task whose command leaves a grandchild ``sleep`` running in the background, writes
    its pid, then waits for ever (until killed)."""
    (tmp / "leave.yaml").write_text(
        "name: leave\n"
        "agents:\n"
        "  - name: a\n"
        "    capabilities: {code: 0.9}\n"
        "    runner: {type: command, argv: [sh, -c, 'sleep 300 & echo $! > bg.pid; sleep 300']}\n"
        "tasks:\n"
        "  - {id: t, capability: code}\n"
    )
    return tmp / "leave.yaml"


@pytest.mark.timeout(60)
async def test_the_next_orchestrator_kills_what_a_killed_one_left_running(
    tmp_path: Path,
) -> None:
    wf = workflow(tmp_path)
    db = tmp_path / "j.db"
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the loop has work
        [*CLI, "run", str(wf), "--db", str(db), "-q"], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pidfile = tmp_path / "bg.pid"
    try:
        await wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip() != "", timeout_s=30
        )
        grandchild = int(pidfile.read_text())
        assert running(grandchild)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The orchestrator is gone; what its agent started in the background is not.
    await wait_until(lambda: parent_of(grandchild) != proc.pid, timeout_s=10)
    assert running(grandchild)
    innocent = subprocess.Popen(["sleep", "300"])  # noqa: ASYNC220 - not a dead owner's
    try:
        journal = SqliteJournal(db)
        assert dead_spawners(journal) == [proc.pid]
        started: list[bool] = []

        async def work(_: object) -> None:
            started.append(running(grandchild))

        spec = AgentSpec("b", {"other": 1.0}, FunctionRunner(work))
        async with Orchestrator([spec], journal=journal) as orch:
            await orch.execute_batch([AgentTask("x", "other")], name="next")
            reaped = orch.reaped
        journal.close()
        assert reaped is not None
        assert reaped.spawners == [proc.pid]
        assert grandchild in reaped.killed
        assert started == [False]  # killed before anything was dispatched
        await wait_until(lambda: not running(grandchild), timeout_s=10)
        assert running(innocent.pid)
    finally:
        innocent.kill()
        innocent.wait()
        if running(grandchild):
            os.kill(grandchild, signal.SIGKILL)


@pytest.mark.timeout(30)
def test_a_live_owners_processes_are_left_alone_until_it_is_dead(tmp_path: Path) -> None:
    """An owner is a process that holds a lease (here a stand-in ``sleep``); a process tagged
    with its pid is left alone while it lives and killed once it is dead."""
    owner_proc = subprocess.Popen(["sleep", "300"])
    tagged = subprocess.Popen(
        ["sleep", "300"], env={**os.environ, SPAWNER_ENV: str(owner_proc.pid)}
    )
    other = subprocess.Popen(["sleep", "300"])  # not tagged by it
    journal = SqliteJournal(tmp_path / "j.db")
    try:
        owner = dataclasses.replace(Owner.here(), pid=owner_proc.pid)
        journal.open_run("r", "r", [AgentTask("t", "c")], owner=owner)
        alive = reap_leftovers(journal)
        assert (alive.spawners, alive.killed) == ([], [])
        assert running(tagged.pid)
        owner_proc.kill()
        owner_proc.wait()
        dead = reap_leftovers(journal)
        assert dead.spawners == [owner_proc.pid]
        assert dead.killed == [tagged.pid]
        tagged.wait(timeout=10)  # it was killed: its parent (this test) collects it
        assert tagged.returncode == -signal.SIGKILL
        assert running(other.pid)
    finally:
        journal.close()
        for p in (owner_proc, tagged, other):
            p.kill()
            p.wait()
