"""Resume and retry that can be trusted: the workflow file journaled by its absolute path (a run
resumes from any directory), its identity checked (an edited file is refused unless
``--force``), sane figures for a resumed run, and ``retry`` of a finished run that keeps what
succeeded. Real processes on real SQLite files."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask
from metaagent.journal.sqlite import SqliteJournal
from metaagent.testing import noop_runner
from metaagent.workflow.identity import batch_key, describe_change

if TYPE_CHECKING:
    from pathlib import Path

RUN_LINE = re.compile(r"^run (run-\w+) \(journal .+\)$", re.MULTILINE)

# Each task appends its id to ``ledger`` in the workdir; ``second`` fails until ``go`` exists
# there, and so do ``other`` and ``later`` until ``go-other`` does.
WORKFLOW = """
name: trust
settings: {max_concurrency: 2}
agents:
  - name: sh
    capabilities: {code: 0.9}
    concurrency: 2
    runner:
      type: command
      argv: [sh, -c, 'echo {task_id} >> ledger; case {task_id} in second) [ -e go ];;
        other|later) [ -e go-other ];; esac']
tasks:
  - {id: first, capability: code, max_attempts: 1}
  - {id: second, capability: code, depends_on: [first], max_attempts: 1}
  - {id: third, capability: code, depends_on: [second], max_attempts: 1}
"""

TWO_FAILURES = WORKFLOW + (
    "  - {id: other, capability: code, max_attempts: 1}\n"
    "  - {id: later, capability: code, depends_on: [other], max_attempts: 1}\n"
)


def cli(*args: str, cwd: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "METAAGENT_CRASH_AT"}
    env.update(NO_COLOR="1", COLUMNS="200")
    if crash_at is not None:
        env["METAAGENT_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "metaagent.cli", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def setup(tmp: Path, text: str = WORKFLOW) -> Path:
    """A project directory holding the workflow, and another directory to work from."""
    project = tmp / "project"
    project.mkdir()
    (project / "wf.yaml").write_text(text)
    (tmp / "elsewhere").mkdir()
    return project


def run_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    match = RUN_LINE.search(proc.stderr)
    assert match is not None, proc.stderr
    return match[1]


def crashed_run(project: Path) -> str:
    """The id of a run of the project's workflow on ``j.db`` killed after its first result."""
    crashed = cli(
        "run", "wf.yaml", "-q", "--db", "j.db", cwd=project,
        crash_at="after_result_before_commit:1",
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    return run_id_of(crashed)


def ledger(project: Path) -> list[str]:
    path = project / "ledger"
    return path.read_text().split() if path.exists() else []


def states(db: Path, run_id: str) -> dict[str, str]:
    store = SqliteJournal(db)
    try:
        stored = store.load_run(run_id)
    finally:
        store.close()
    return {t.id: stored.results[t.id].state.value for t in stored.tasks if t.id in stored.results}


def test_a_crashed_run_resumes_from_another_directory(tmp_path: Path) -> None:
    project = setup(tmp_path)
    (project / "go").touch()
    crashed = cli("run", "wf.yaml", "-q", cwd=project, crash_at="after_result_before_commit:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    run_id = run_id_of(crashed)
    store = SqliteJournal(project / ".metaagent" / "metaagent.db")
    try:
        (info,) = store.list_runs()
    finally:
        store.close()
    assert info.source == str(project / "wf.yaml")  # absolute, whatever the cwd was

    db = str(project / ".metaagent" / "metaagent.db")
    resumed = cli("resume", run_id, "--db", db, "-q", cwd=tmp_path / "elsewhere")
    assert resumed.returncode == 0, resumed.stderr
    assert set(states(project / ".metaagent" / "metaagent.db", run_id).values()) == {"succeeded"}


def test_an_edited_workflow_is_refused_unless_forced(tmp_path: Path) -> None:
    project = setup(tmp_path)
    (project / "go").touch()
    run_id = crashed_run(project)
    wf = project / "wf.yaml"
    third = "{id: third, capability: code"
    wf.write_text(wf.read_text().replace(third, third + ", prompt: new"))

    refused = cli("resume", run_id, "--db", "j.db", "-q", cwd=project)
    assert refused.returncode == 2, refused.stderr
    message = " ".join(refused.stderr.split())
    assert f"the workflow file {wf} changed since run {run_id} started" in message
    assert "journaled identity wf:" in message
    assert "tasks changed: third (prompt)" in message
    assert "--force" in message
    assert len(ledger(project)) == 1  # nothing ran

    forced = cli("resume", run_id, "--db", "j.db", "-q", "--force", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert "warning:" in forced.stderr
    assert "changed since run" in " ".join(forced.stderr.split())
    assert set(states(project / "j.db", run_id).values()) == {"succeeded"}
    # The override is in the journal, for whoever reads the run later.
    shown = json.loads(cli("show", run_id, "--db", "j.db", "--json", cwd=project).stdout)
    assert len(shown["overrides"]) == 1
    assert shown["overrides"][0].startswith("resumed with --force: the workflow file")
    listed = json.loads(cli("runs", "--db", "j.db", "--json", cwd=project).stdout)
    assert [r["overrides"] for r in listed if r["run_id"] == run_id] == [shown["overrides"]]


def test_an_edited_agent_is_refused_too(tmp_path: Path) -> None:
    project = setup(tmp_path)
    ran = cli("run", "wf.yaml", "-q", "--db", "j.db", cwd=project)
    assert ran.returncode == 1, ran.stderr
    wf = project / "wf.yaml"
    wf.write_text(wf.read_text().replace("concurrency: 2", "concurrency: 1"))
    refused = cli("resume", run_id_of(ran), "--db", "j.db", "-q", cwd=project)
    assert refused.returncode == 2, refused.stderr
    assert "the agents' definitions" in " ".join(refused.stderr.split())


def test_resuming_a_finished_run_reports_sane_figures(tmp_path: Path) -> None:
    project = setup(tmp_path)
    (project / "go").touch()
    ran = cli("run", "wf.yaml", "-q", "--db", "j.db", "--json", "ran.json", cwd=project)
    assert ran.returncode == 0, ran.stderr
    resumed = cli(
        "resume", run_id_of(ran), "--db", "j.db", "-q", "--json", "again.json", cwd=project
    )
    assert resumed.returncode == 0, resumed.stderr
    before = json.loads((project / "ran.json").read_text())
    after = json.loads((project / "again.json").read_text())
    assert 0.0 < before["utilisation"] <= 1.0
    assert 0.0 < after["utilisation"] <= 1.0
    assert after["makespan_s"] > 0
    assert ledger(project) == ["first", "second", "third"]  # nothing ran again


def test_retry_runs_only_what_did_not_succeed(tmp_path: Path) -> None:
    project = setup(tmp_path)
    ran = cli("run", "wf.yaml", "-q", "--db", "j.db", cwd=project)
    assert ran.returncode == 1, ran.stderr
    old = run_id_of(ran)
    assert states(project / "j.db", old) == {
        "first": "succeeded", "second": "failed", "third": "skipped"
    }  # fmt: skip
    assert ledger(project) == ["first", "second"]

    (project / "go").touch()
    db = str(project / "j.db")
    retried = cli("retry", old, "--db", db, "-q", "--json", "r.json", cwd=tmp_path / "elsewhere")
    assert retried.returncode == 0, retried.stderr
    new = run_id_of(retried)
    assert new != old
    assert f"retrying run {old} as run {new}: 2 tasks run again, 1 kept" in retried.stderr
    assert ledger(project) == ["first", "second", "second", "third"]  # first ran once
    assert set(states(project / "j.db", new).values()) == {"succeeded"}
    assert states(project / "j.db", old)["second"] == "failed"  # never overwritten
    report = json.loads((tmp_path / "elsewhere" / "r.json").read_text())
    assert report["run_id"] == new
    assert report["ok"] is True
    assert 0.0 < report["utilisation"] <= 1.0

    again = cli("retry", new, "--db", db, "-q", cwd=project)
    assert again.returncode == 0, again.stderr
    assert "nothing to retry" in again.stderr


def test_retry_applies_the_retention_setting_like_run_and_resume(tmp_path: Path) -> None:
    kept_30_days = WORKFLOW.replace(
        "{max_concurrency: 2}", "{max_concurrency: 2, retention_days: 30}"
    )
    project = setup(tmp_path, kept_30_days)
    ran = cli("run", "wf.yaml", "-q", "--db", "j.db", cwd=project)
    assert ran.returncode == 1, ran.stderr
    old = run_id_of(ran)
    conn = sqlite3.connect(project / "j.db")
    with conn:  # the failed run finished 40 days ago
        conn.execute("UPDATE runs SET finished_at = finished_at - 40 * 86400")
    conn.close()
    (project / "go").touch()
    retried = cli("retry", old, "--db", "j.db", "-q", cwd=project)
    assert retried.returncode == 0, retried.stderr
    assert "retention: deleted 1 finished runs older than 30 days" in retried.stderr
    new = run_id_of(retried)
    journal = SqliteJournal(project / "j.db")
    try:
        assert [r.run_id for r in journal.list_runs()] == [new]
    finally:
        journal.close()
    assert set(states(project / "j.db", new).values()) == {"succeeded"}


def test_retry_of_named_tasks_keeps_the_other_failures(tmp_path: Path) -> None:
    project = setup(tmp_path, TWO_FAILURES)
    ran = cli("run", "wf.yaml", "-q", "--db", "j.db", cwd=project)
    assert ran.returncode == 1, ran.stderr
    (project / "go-other").touch()
    retried = cli("retry", run_id_of(ran), "--task", "other", "--db", "j.db", "-q", cwd=project)
    assert retried.returncode == 1, retried.stderr  # second still failed: its retry was not asked
    assert states(project / "j.db", run_id_of(retried)) == {
        "first": "succeeded", "second": "failed", "third": "skipped",
        "other": "succeeded", "later": "succeeded",
    }  # fmt: skip
    assert sorted(ledger(project)) == sorted(["first", "second", "other", "other", "later"])


def test_retry_refuses_bad_input(tmp_path: Path) -> None:
    project = setup(tmp_path)
    finished = crashed_run(project)
    resumed = cli("resume", finished, "--db", "j.db", "-q", cwd=project)
    assert resumed.returncode == 1, resumed.stderr  # second failed
    cases = {
        ("nope",): "no run 'nope'",
        (finished, "--task", "fourth"): "has no task 'fourth'",
    }
    for args, problem in cases.items():
        refused = cli("retry", *args, "--db", "j.db", "-q", cwd=project)
        assert refused.returncode == 2, refused.stderr
        assert problem in refused.stderr

    refused = cli("retry", crashed_run(project), "--db", "j.db", "-q", cwd=project)
    assert refused.returncode == 2, refused.stderr
    assert "has not finished: resume it instead" in refused.stderr


def test_the_key_covers_the_agents_and_names_what_changed() -> None:
    tasks = [AgentTask("a", "code"), AgentTask("b", "code", depends_on=("a",))]
    one = AgentSpec("x", {"code": 0.9}, noop_runner(), concurrency=1)
    two = AgentSpec("x", {"code": 0.9}, noop_runner(), concurrency=2)
    key = batch_key("wf", tasks, "/w", [one])
    assert re.fullmatch(r"wf:[0-9a-f]{32}", key)
    assert key == batch_key("wf", list(tasks), "/w", [AgentSpec("x", {"code": 0.9}, noop_runner())])
    assert key != batch_key("wf", tasks, "/w", [two])
    assert key != batch_key("wf", tasks, "/w")  # the key journals held before agents counted

    edited = [AgentTask("a", "code", prompt="new"), AgentTask("c", "code")]
    assert describe_change(("wf", tasks), ("wf", tasks)) == []
    assert describe_change(("wf", tasks), ("wf2", edited)) == [
        "name 'wf' -> 'wf2'", "tasks added: c", "tasks removed: b", "tasks changed: a (prompt)"
    ]  # fmt: skip
