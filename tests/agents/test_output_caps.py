"""Output is capped per attempt; stderr is kept, capped, as the attempt's log (journaled too)."""

from __future__ import annotations

import json
import sqlite3
import sys
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentFailure,
    AgentSpec,
    AgentTask,
    AttemptContext,
    CommandRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryPolicy,
)
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.agents.process import MB, Capped, run_process
from metaagent.journal.memory import MemoryJournal
from metaagent.journal.migrations import SCHEMA_VERSION, migrate
from metaagent.journal.sqlite import SqliteJournal
from metaagent.journal.sqlite_write import Batch
from metaagent.report.stored import stored_report

if TYPE_CHECKING:
    from pathlib import Path


def ctx(tid: str = "t1") -> AttemptContext:
    return AttemptContext(AgentTask(tid, "code"), "run-1", 1, "cmd", "cmd-1")


def script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def orchestrator(runner: CommandRunner, workdir: Path, **kw: object) -> Orchestrator:
    cfg = OrchestratorConfig(retry=RetryPolicy(base_s=0.001, jitter=0.0), workdir=str(workdir))
    return Orchestrator([AgentSpec("cmd", {"code": 0.9}, runner)], cfg, **kw)  # type: ignore[arg-type]


# --- the capped buffer ------------------------------------------------------------------------


def test_head_only_keeps_the_start_and_counts_the_rest() -> None:
    c = Capped(10)
    for chunk in (b"0123", b"456789ab", b"cdef"):
        c.add(chunk)
    assert len(c) == 16
    assert c.dropped == 6
    assert c.value() == b"0123456789\n[... 6 bytes of output dropped: limit 10 bytes]\n"


def test_under_the_cap_nothing_is_marked() -> None:
    c = Capped(10, tail=True)
    c.add(b"hello")
    assert c.value() == b"hello"
    assert c.dropped == 0


def test_head_and_tail_keep_both_ends() -> None:
    c = Capped(MB, tail=True, what="log")
    c.add(b"start\n")
    for _ in range(100):
        c.add(b"x" * 65536)
    c.add(b"\nthe end")
    text = c.value().decode()
    assert text.startswith("start\n")
    assert text.endswith("\nthe end")
    assert "bytes of log dropped: limit 1 MB]" in text
    assert c.dropped == 6 + 100 * 65536 + 8 - MB
    assert len(c.value()) < MB + 100


def test_a_negative_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_output_mb"):
        CommandRunner(["echo"], max_output_mb=-1)
    with pytest.raises(ValueError, match="max_log_mb"):
        PersistentCommandRunner(["cat"], max_log_mb=float("inf"))


# --- command agents ---------------------------------------------------------------------------


async def test_huge_stdout_is_cut_at_the_cap_with_a_marker() -> None:
    code = "import sys\nfor _ in range(40): sys.stdout.write('y' * 1048576)\n"
    runner = CommandRunner(script(code), max_output_mb=2)
    out = await runner.run(ctx())
    assert isinstance(out, str)
    assert out.startswith("y" * 1000)
    assert out.endswith(f"[... {38 * MB:,} bytes of output dropped: limit 2 MB]")
    assert len(out) < 2 * MB + 100


async def test_run_process_reads_in_chunks_without_keeping_the_rest() -> None:
    code = "import sys\nfor _ in range(64): sys.stdout.write('z' * 1048576)\n"
    done = await run_process(script(code), stdin=None, max_output_bytes=1000)
    assert done.returncode == 0
    assert done.stdout_dropped == 64 * MB - 1000
    assert len(done.stdout) < 1100


async def test_stderr_of_a_success_is_the_attempt_log() -> None:
    code = "import sys; sys.stderr.write('step 1\\nstep 2\\n'); print('{\"ok\": 1}')"
    c = ctx()
    assert await CommandRunner(script(code)).run(c) == {"ok": 1}
    assert c.log == "step 1\nstep 2"


async def test_no_stderr_no_log() -> None:
    c = ctx()
    assert await CommandRunner(script("print('x')")).run(c) == "x"
    assert c.log is None


async def test_huge_stderr_keeps_head_and_tail() -> None:
    code = (
        "import sys\nsys.stderr.write('first line\\n')\n"
        "for _ in range(8): sys.stderr.write('e' * 1048576)\n"
        "sys.stderr.write('\\nlast line')\n"
    )
    c = ctx()
    await CommandRunner(script(code), max_log_mb=1).run(c)
    assert c.log is not None
    assert c.log.startswith("first line\n")
    assert c.log.endswith("\nlast line")
    assert "bytes of log dropped: limit 1 MB]" in c.log
    assert len(c.log) < MB + 100


async def test_a_failure_keeps_the_log_and_the_tail_in_the_error() -> None:
    code = "import sys; sys.stderr.write('trace\\nthe reason'); sys.exit(4)"
    c = ctx()
    with pytest.raises(AgentFailure, match="status 4: trace\nthe reason"):
        await CommandRunner(script(code)).run(c)
    assert c.log == "trace\nthe reason"


async def test_a_timed_out_attempt_keeps_what_it_logged(tmp_path: Path) -> None:
    code = (
        "import sys, time; sys.stderr.write('stuck at step 3'); sys.stderr.flush(); "
        "open(sys.argv[1], 'w').close(); time.sleep(100)"
    )
    runner = CommandRunner([*script(code), str(tmp_path / "started")])
    async with orchestrator(runner, tmp_path) as orch:
        batch = await orch.execute_batch([AgentTask("t", "code", timeout_s=0.5, max_attempts=1)])
    (a,) = batch.result("t").attempts
    assert a.outcome is Outcome.TIMEOUT
    assert a.log == "stuck at step 3"


# --- persistent agents ------------------------------------------------------------------------

PERSISTENT = """
import json, sys, time
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("type") == "shutdown":
        break
    if msg.get("type") == "task":
        sys.stderr.write("working on " + msg["task"]["id"] + "\\n")
        sys.stderr.flush()
        time.sleep(0.2)  # the line is read before the reply comes
    reply = {"id": msg["id"], "ok": True, "output": "done", "type": "pong"}
    sys.stdout.write(json.dumps(reply) + "\\n")
    sys.stdout.flush()
"""


async def test_persistent_attempts_get_the_stderr_written_meanwhile(tmp_path: Path) -> None:
    runner = PersistentCommandRunner(script(PERSISTENT))
    await runner.open("cmd-1", str(tmp_path))
    try:
        first, second = ctx("a"), ctx("b")
        assert await runner.run(first) == "done"
        assert await runner.run(second) == "done"
    finally:
        await runner.close("cmd-1")
    assert first.log == "working on a"
    assert second.log == "working on b"


# --- journaled and reported -------------------------------------------------------------------

LOGGED = "import sys; sys.stderr.write('made 3 files'); print('ok')"


async def test_the_log_is_in_the_report_and_the_memory_journal(tmp_path: Path) -> None:
    journal = MemoryJournal()
    async with orchestrator(CommandRunner(script(LOGGED)), tmp_path, journal=journal) as orch:
        batch = await orch.execute_batch([AgentTask("t", "code")])
    (attempt,) = batch.to_json()["tasks"][0]["attempts"]  # type: ignore[index]
    assert attempt["log"] == "made 3 files"
    stored = journal.load_run(batch.run_id)
    assert stored.attempts["t"][0].log == "made 3 files"
    report = stored_report(stored)
    assert report["tasks"][0]["attempts"][0]["log"] == "made 3 files"  # type: ignore[index]


async def test_the_log_is_journaled_in_sqlite(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    try:
        async with orchestrator(CommandRunner(script(LOGGED)), tmp_path, journal=journal) as orch:
            batch = await orch.execute_batch([AgentTask("t", "code")])
        assert journal.load_run(batch.run_id).attempts["t"][0].log == "made 3 files"
    finally:
        journal.close()


def test_sqlite_writes_and_reads_the_log(tmp_path: Path) -> None:
    """The write (a row with its log) and the read, on the file, around the journal object."""
    journal = SqliteJournal(tmp_path / "j.db")
    journal.close()
    conn = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    conn.execute("INSERT INTO runs (run_id, name, created_at) VALUES ('r', 'r', 0)")
    conn.execute(
        "INSERT INTO run_tasks VALUES ('r', ?)", (json.dumps([{"id": "t", "capability": "c"}]),)
    )
    conn.execute(
        "INSERT INTO attempts (run_id, task_id, number, agent, instance, started_at)"
        " VALUES ('r', 't', 1, 'a', 'a-1', 0.0), ('r', 't', 2, 'a', 'a-1', 1.0)"
    )
    batch = Batch()
    batch.attempts_done.append((1.0, "error", "boom", "r", "t", 1, "the log"))
    batch.attempts_done.append((2.0, "succeeded", None, "r", "t", 2))  # a row without a log
    assert batch.run_ids() == {"r"}
    conn.execute("BEGIN")
    batch.apply(conn)
    conn.execute("COMMIT")
    conn.close()
    journal = SqliteJournal(tmp_path / "j.db")
    try:
        first, second = journal.load_run("r").attempts["t"]
    finally:
        journal.close()
    assert (first.outcome, first.error, first.log) == (Outcome.ERROR, "boom", "the log")
    assert (second.outcome, second.log) == (Outcome.SUCCEEDED, None)
