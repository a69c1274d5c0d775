"""``metaagent logs RUN TASK``: an attempt's log on stdout, its error on stderr; exit 2 when the
run, task or attempt is unknown."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from metaagent import (
    AgentSpec,
    AgentTask,
    CommandRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryPolicy,
)
from metaagent.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from pathlib import Path

CLI = [sys.executable, "-m", "metaagent.cli"]

# Attempt 1 fails, attempt 2 succeeds; each says so on stderr.
FLAKY = (
    "import json, sys\n"
    "n = json.load(sys.stdin)['attempt']\n"
    "sys.stderr.write(f'attempt {n} [working]\\n')\n"
    "if n == 1:\n"
    "    sys.stderr.write('boom')\n"
    "    sys.exit(3)\n"
    "print('done')\n"
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def journaled_run(tmp: Path) -> str:
    """A run of one task tried twice, in ``tmp/j.db``; returns its id."""

    async def run() -> str:
        runner = CommandRunner([sys.executable, "-c", FLAKY])
        cfg = OrchestratorConfig(retry=RetryPolicy(base_s=0.001, jitter=0.0), workdir=str(tmp))
        journal = SqliteJournal(tmp / "j.db")
        try:
            agents = [AgentSpec("cmd", {"code": 0.9}, runner)]
            async with Orchestrator(agents, cfg, journal=journal) as orch:
                batch = await orch.execute_batch([AgentTask("t", "code")])
        finally:
            journal.close()
        assert [a.outcome for a in batch.result("t").attempts] == [
            Outcome.ERROR,
            Outcome.SUCCEEDED,
        ]
        return batch.run_id

    run_id = asyncio.run(run())
    return run_id


def test_logs_prints_the_last_attempt_by_default_and_any_one_on_request(tmp_path: Path) -> None:
    run_id = journaled_run(tmp_path)
    last = cli("logs", run_id, "t", "--db", "j.db", cwd=tmp_path)
    assert last.returncode == 0, last.stderr
    assert last.stdout == "attempt 2 [working]\n"  # the log alone: markup-like text untouched
    assert "task t attempt 2 on cmd" in last.stderr
    assert "succeeded" in last.stderr
    assert "error:" not in last.stderr

    first = cli("logs", run_id, "t", "--attempt", "1", "--db", "j.db", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "attempt 1 [working]\nboom\n"
    assert "attempt 1 on cmd" in first.stderr
    assert "error: AgentFailure:" in first.stderr
    assert "exited with status 3" in first.stderr


def test_unknown_run_task_or_attempt_exit_2(tmp_path: Path) -> None:
    run_id = journaled_run(tmp_path)
    cases = {
        ("nope", "t"): "no run 'nope'",
        (run_id, "x"): f"run {run_id!r} has no task 'x'",
        (run_id, "t", "--attempt", "7"): "task 't' has no attempt 7 (its attempts: 1, 2)",
    }
    for args, message in cases.items():
        done = cli("logs", *args, "--db", "j.db", cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert message in " ".join(done.stderr.split()), done.stderr
        assert done.stdout == ""
    missing = cli("logs", run_id, "t", "--db", "other.db", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no journal there" in missing.stderr
