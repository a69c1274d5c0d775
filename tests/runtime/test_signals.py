"""SIGTERM and SIGINT stop a run in order: real processes, a grandchild, the journal after."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator, Outcome, TaskState
from metaagent.journal.sqlite import SqliteJournal
from metaagent.runtime.signals import exit_code, stop_on_signals
from metaagent.testing import wait_until
from tests.conftest import process_alive

WORKER = Path(__file__).with_name("signal_worker.py")
ROOT = WORKER.parent.parent.parent


def test_exit_codes_are_the_shells() -> None:
    assert exit_code(signal.SIGTERM) == 143
    assert exit_code(signal.SIGINT) == 130


class Worker:
    """The worker process of one test, with its journal and the grandchild's pid file."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.db = tmp_path / "j.db"
        self.pidfile = tmp_path / "grandchild.pid"
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.db), str(self.pidfile), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
        )

    async def grandchild(self) -> int:
        """The grandchild's pid, once it runs."""
        proc, pidfile = self.proc, self.pidfile
        await wait_until(
            lambda: pidfile.exists() or proc.poll() is not None, timeout_s=20, what="grandchild"
        )
        assert proc.poll() is None, proc.communicate()
        pid = int(pidfile.read_text())
        assert process_alive(pid)
        return pid

    async def wait(self) -> tuple[int, str, str]:
        """Its exit status, stdout and stderr."""
        out, err = await asyncio.to_thread(self.proc.communicate, timeout=20)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_signal_stops_the_run_and_its_processes(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    worker = Worker(tmp_path)
    try:
        grandchild = await worker.grandchild()
        worker.proc.send_signal(sig)
        status, out, err = await worker.wait()
    finally:
        worker.kill()
    assert status == code, err
    run_id = out.split()[1]
    assert f"metaagent: {sig.name}: stopping" in err
    assert "1 attempt in flight recorded as lost" in err
    assert f"resume with: metaagent resume {run_id} --db {worker.db}" in err
    await wait_until(lambda: not process_alive(grandchild), what="the grandchild gone")

    journal = SqliteJournal(worker.db)
    try:
        stored = journal.load_run(run_id)
        assert "t" not in stored.results  # not terminal: it runs again on resume
        (lost,) = stored.attempts["t"]
        assert lost.outcome is Outcome.LOST
        assert lost.finished_at is not None
        assert sig.name in (lost.error or "")
        assert journal.lease(run_id) is None  # given up: a resume may start at once

        # A resumed run routes the task again, as attempt 2, uncharged by the lost one.
        async def done(ctx: object) -> str:
            return "again"

        agent = AgentSpec("cmd", {"code": 0.9}, FunctionRunner(done))
        async with Orchestrator([agent], journal=journal) as orch:
            batch = await (await orch.resume(run_id)).result()
    finally:
        journal.close()
    res = batch.result("t")
    assert res.state is TaskState.SUCCEEDED
    assert [(a.number, a.outcome) for a in res.attempts] == [
        (1, Outcome.LOST),
        (2, Outcome.SUCCEEDED),
    ]


async def test_a_second_signal_while_stopping_forces_the_exit(tmp_path: Path) -> None:
    worker = Worker(tmp_path, "stubborn")
    stubborn = tmp_path / "grandchild.pid.stubborn"
    try:
        grandchild = await worker.grandchild()
        worker.proc.send_signal(signal.SIGTERM)
        await wait_until(stubborn.exists, timeout_s=20, what="the stop under way, hanging")
        assert worker.proc.poll() is None
        worker.proc.send_signal(signal.SIGTERM)
        status, _, err = await worker.wait()
    finally:
        worker.kill()
    assert status == 143, err
    assert "SIGTERM again: exiting now" in err
    await wait_until(lambda: not process_alive(grandchild), what="the grandchild gone")


async def test_without_a_signal_nothing_changes() -> None:
    async def body(ctx: object) -> str:
        return "ok"

    before = signal.getsignal(signal.SIGTERM)
    agent = AgentSpec("f", {"code": 0.9}, FunctionRunner(body))
    async with Orchestrator([agent]) as orch, stop_on_signals(orch) as stop:
        batch = await orch.execute_batch([AgentTask("t", "code")])
    assert batch.ok
    assert stop.received is None
    assert signal.getsignal(signal.SIGTERM) == before


async def test_in_process_without_exiting(tmp_path: Path) -> None:
    """``exit_process=False`` (a service): the body is cancelled, the orchestrator closed, the
    attempt journaled lost, and the caller reads which signal came."""
    started = asyncio.Event()

    async def body(ctx: object) -> str:
        started.set()
        await asyncio.sleep(1000)
        return "never"

    journal = SqliteJournal(tmp_path / "j.db")
    messages: list[str] = []

    class Out:
        def write(self, text: str) -> int:
            messages.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    try:
        orch = Orchestrator([AgentSpec("f", {"code": 0.9}, FunctionRunner(body))], journal=journal)
        stop = stop_on_signals(orch, out=Out(), exit_process=False)  # type: ignore[arg-type]
        async with stop:
            handle = await orch.submit([AgentTask("t", "code")])
            await started.wait()
            os.kill(os.getpid(), signal.SIGTERM)
            await handle.result()
            pytest.fail("the body should have been cancelled")
        assert stop.received is signal.SIGTERM
        assert stop.lost == 1
        assert "resume with: metaagent resume " + handle.run_id in "".join(messages)
        stored = journal.load_run(handle.run_id)
        assert [a.outcome for a in stored.attempts["t"]] == [Outcome.LOST]
        await orch.aclose()  # closing again is harmless
    finally:
        journal.close()
