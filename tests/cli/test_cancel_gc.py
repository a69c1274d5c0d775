"""``metaagent cancel`` from another process, applied by the run's owner within a second or so;
``metaagent gc`` deleting old finished runs only."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from metaagent.core.tasks import AgentTask, TaskState
from metaagent.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from metaagent.journal.base import StoredRun

CLI = [sys.executable, "-m", "metaagent.cli"]
RUN_LINE = re.compile(r"^run (run-\w+) \(journal (.+)\)$")
DEADLINE_S = 20.0  # a bound for a slow machine; the owner polls every 0.5 s


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def gated_workflow(tmp: Path) -> str:
    """``first`` and ``other`` wait for a file ``go``; ``second`` depends on ``first``."""
    run = "[sh, -c, 'while [ ! -e go ]; do sleep 0.02; done; echo ok']"
    (tmp / "wf.yaml").write_text(
        "name: gated\n"
        "agents:\n"
        "  - name: a\n"
        "    capabilities: {code: 0.9}\n"
        f"    runner: {{type: command, argv: {run}}}\n"
        "tasks:\n"
        "  - {id: first, capability: code}\n"
        "  - {id: second, capability: code, depends_on: [first]}\n"
        "  - {id: other, capability: code}\n"
    )
    return "wf.yaml"


def start_run(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*CLI, "run", gated_workflow(tmp), "--db", "j.db", "-q"], cwd=tmp, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    match = RUN_LINE.match(proc.stderr.readline().rstrip("\n"))
    assert match is not None
    return proc, match[1]


def read_run(db: Path, run_id: str) -> StoredRun:
    store = SqliteJournal(db)
    try:
        return store.load_run(run_id, decisions=False)
    finally:
        store.close()


def poll_until(db: Path, run_id: str, done: Callable[[StoredRun], object]) -> StoredRun:
    """Read the run from the journal until ``done(run)`` holds, within ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        run = read_run(db, run_id)
        if done(run):
            return run
        assert time.monotonic() < deadline, f"run {run_id} did not get there: {run.results}"
        time.sleep(0.05)


def states(run: StoredRun) -> dict[str, TaskState]:
    return {tid: r.state for tid, r in run.results.items()}


def started(run: StoredRun) -> bool:
    return bool(run.attempts)


def test_cancel_stops_a_run_another_process_executes(tmp_path: Path) -> None:
    proc, run_id = start_run(tmp_path)
    try:
        poll_until(tmp_path / "j.db", run_id, started)
        asked = cli("cancel", run_id, "--db", "j.db", cwd=tmp_path)
        assert asked.returncode == 0, asked.stderr
        assert f"cancel of run {run_id} requested; its owner pid {proc.pid}" in asked.stdout
        run = poll_until(tmp_path / "j.db", run_id, lambda r: r.info.finished)
        assert states(run) == {
            "first": TaskState.CANCELLED,
            "other": TaskState.CANCELLED,
            "second": TaskState.SKIPPED,
        }
        assert proc.wait(timeout=DEADLINE_S) == 1
    finally:
        proc.kill()
        proc.communicate()


def test_cancel_of_one_task_leaves_the_others_running(tmp_path: Path) -> None:
    proc, run_id = start_run(tmp_path)
    try:
        poll_until(tmp_path / "j.db", run_id, started)
        asked = cli("cancel", run_id, "--task", "first", "--db", "j.db", cwd=tmp_path)
        assert asked.returncode == 0, asked.stderr
        run = poll_until(tmp_path / "j.db", run_id, lambda r: "second" in r.results)
        assert states(run) == {"first": TaskState.CANCELLED, "second": TaskState.SKIPPED}
        (tmp_path / "go").touch()
        run = poll_until(tmp_path / "j.db", run_id, lambda r: r.info.finished)
        assert states(run)["other"] is TaskState.SUCCEEDED
        assert proc.wait(timeout=DEADLINE_S) == 1
    finally:
        proc.kill()
        proc.communicate()


def test_cancel_refuses_unknown_runs_and_tasks_and_finished_runs(tmp_path: Path) -> None:
    (tmp_path / "go").touch()
    done = cli("run", gated_workflow(tmp_path), "--db", "j.db", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    match = RUN_LINE.match(done.stderr.splitlines()[0])
    assert match is not None
    finished = match[1]
    assert cli("cancel", "run-nope", "--db", "j.db", cwd=tmp_path).returncode == 2
    refused = cli("cancel", finished, "--db", "j.db", cwd=tmp_path)
    assert refused.returncode == 2
    assert "has finished" in refused.stderr
    store = SqliteJournal(tmp_path / "j.db")
    store.open_run("r-open", "gated", read_run(tmp_path / "j.db", finished).tasks)
    store.close()
    unknown = cli("cancel", "r-open", "--task", "zz", "--db", "j.db", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "has no task 'zz'" in unknown.stderr
    orphan = cli("cancel", "r-open", "--db", "j.db", cwd=tmp_path)
    assert orphan.returncode == 0, orphan.stderr
    assert "no process executes it now" in orphan.stdout


def test_gc_deletes_old_finished_runs_only(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    store = SqliteJournal(db)
    tasks = [AgentTask("a", "code")]
    for run_id in ("old-1", "old-2", "open-old", "recent"):
        store.open_run(run_id, "wf", tasks)
        store.task_finished(run_id, "a", TaskState.SUCCEEDED, 1, None, 1.0)
        if run_id != "open-old":
            store.run_finished(run_id)
    store.close()
    conn = sqlite3.connect(db)
    with conn:
        long_ago = time.time() - 40 * 86400
        conn.execute(
            "UPDATE runs SET created_at = ?, finished_at = CASE WHEN finished_at IS NULL"
            " THEN NULL ELSE ? END WHERE run_id != 'recent'",
            (long_ago, long_ago),
        )
    conn.close()

    dry = cli("gc", "--older-than", "30d", "--db", "j.db", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 2 runs (")
    assert len(runs_in(db)) == 4
    gone = cli("gc", "--older-than", "30d", "--db", "j.db", cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith("deleted 2 runs (")
    assert sorted(runs_in(db)) == ["open-old", "recent"]
    again = cli("gc", "--older-than", "720h", "--db", "j.db", cwd=tmp_path)
    assert again.stdout.startswith("deleted 0 runs (0 rows)")


def runs_in(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r for (r,) in conn.execute("SELECT run_id FROM runs")]
    finally:
        conn.close()


def test_gc_refuses_an_age_it_cannot_read(tmp_path: Path) -> None:
    SqliteJournal(tmp_path / "j.db").close()
    for age in ("30", "30y", "-1d", "d"):
        bad = cli("gc", "--older-than", age, "--db", "j.db", cwd=tmp_path)
        assert bad.returncode == 2, (age, bad.stderr)
        assert "--older-than" in bad.stderr


def test_the_retention_setting_deletes_old_finished_runs_after_a_run(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: kept\n"
        "settings: {retention_days: 30}\n"
        "agents:\n"
        "  - name: a\n"
        "    capabilities: {code: 0.9}\n"
        "    runner: {type: command, argv: [sh, -c, 'echo ok']}\n"
        "tasks:\n"
        "  - {id: t, capability: code}\n"
    )
    first = cli("run", "wf.yaml", "--db", "j.db", "-q", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    db = tmp_path / "j.db"
    (old,) = runs_in(db)
    conn = sqlite3.connect(db)
    with conn:  # the first run finished 40 days ago
        conn.execute("UPDATE runs SET finished_at = finished_at - 40 * 86400")
    conn.close()
    second = cli("run", "wf.yaml", "--db", "j.db", "-q", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "retention: deleted 1 finished runs older than 30 days" in second.stderr
    remaining = runs_in(db)
    assert len(remaining) == 1
    assert old not in remaining
