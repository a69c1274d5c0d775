"""The coding runner end to end with the fake tools on PATH: each tool in a workspace, usage on
the attempt (journal and report), a failed check's output as the retry's feedback, failures,
hangs and crashes, runs without a workspace, and the role presets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from coding_support import FAKES, git, make_repo
from conftest import process_alive

from metaagent.core.tasks import Outcome, TaskState, Usage
from metaagent.journal.sqlite import SqliteJournal
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.workflow.build import parse_workflow_text
from metaagent.workflow.settings import orchestrator_config

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.report.batch import BatchResult

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def fakes_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("FAKE_LOG_DIR", str(logs))
    return logs


async def run(tmp: Path, text: str, journal: SqliteJournal | None = None) -> BatchResult:
    wf = parse_workflow_text(text, base_dir=tmp)
    cfg = orchestrator_config(wf.settings, workdir=tmp, task_count=len(wf.tasks))
    try:
        async with Orchestrator(wf.agents, cfg, journal=journal) as orch:
            return await orch.execute_batch(wf.tasks, name=wf.name)
    finally:
        if wf.workspace is not None:
            wf.workspace.close()  # the spare checkouts kept for reuse go


def logged(tmp: Path, task: str, attempt: int) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp / "logs" / f"{task}-{attempt}.json").read_text())
    return data


def wf(tool: str, tasks: str, *, workspace: bool = True, agent: str = "") -> str:
    ws = "workspace: {repo: repo, base: main}\n" if workspace else ""
    return (
        f"name: t\n{ws}agents:\n  - name: coder\n    capabilities: {{code: 1.0}}\n"
        f"    runner: {{type: coding, tool: {tool}}}\n{agent}tasks:\n{tasks}"
    )


@pytest.mark.parametrize("tool", ["claude", "codex", "aider"])
async def test_each_tool_changes_its_worktree_and_reports_usage(tmp_path: Path, tool: str) -> None:
    repo = make_repo(tmp_path / "repo")
    journal = SqliteJournal(tmp_path / "j.db")
    try:
        batch = await run(tmp_path, wf(tool, '  - {id: t1, capability: code, prompt: "@write '
                                             'src/m.py=X = 1"}\n'), journal)  # fmt: skip
        (r,) = batch.results
        assert r.state is TaskState.SUCCEEDED, r.error
        out = r.output
        assert isinstance(out, dict)
        assert out["tool"] == tool
        assert out["files"] == ["src/m.py"]
        assert git(repo, "show", f"metaagent/{batch.run_id}:src/m.py") == "X = 1"
        (attempt,) = r.attempts
        assert attempt.usage is not None
        assert out["usage"] == attempt.usage.to_json()
        assert attempt.usage.input_tokens is not None
        assert attempt.usage.input_tokens >= 1000
        assert attempt.usage.output_tokens == 200
        assert (attempt.usage.cost_usd is None) == (tool == "codex")  # codex reports no cost
        stored = journal.load_run(batch.run_id)
        assert stored.attempts["t1"][0].usage == attempt.usage
        report = batch.to_json()
        assert report["cost_usd"] == pytest.approx(attempt.usage.cost_usd or 0.0)
        assert report["tasks"][0]["attempts"][0]["usage"] == attempt.usage.to_json()  # type: ignore[index]
    finally:
        journal.close()


async def test_a_failed_check_is_the_retrys_feedback(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    tasks = """
  - id: fix
    capability: code
    prompt: "@write x.txt=1\\n@retry-write fixed.txt=yes"
    verify: {argv: [sh, -c, "test -f fixed.txt || { echo fixed.txt is missing; exit 1; }"]}
"""
    batch = await run(tmp_path, wf("claude", tasks))
    (r,) = batch.results
    assert r.state is TaskState.SUCCEEDED, r.error
    assert [a.outcome for a in r.attempts] == [Outcome.VERIFY_FAILED, Outcome.SUCCEEDED]
    assert "fixed.txt is missing" in (r.attempts[0].error or "")
    assert all(a.usage is not None for a in r.attempts)  # the failed attempt's usage too
    prompt = str(logged(tmp_path, "fix", 2)["prompt"])
    assert "## Problems with your previous answer" in prompt
    assert "fixed.txt is missing" in prompt
    assert "Problems" not in str(logged(tmp_path, "fix", 1)["prompt"])
    assert git(repo, "show", f"metaagent/{batch.run_id}:fixed.txt") == "yes"


async def test_tool_errors_fail_the_attempt_and_keep_its_usage(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    tasks = """
  - {id: err, capability: code, max_attempts: 1, prompt: "@write a.txt=1\\n@fail"}
  - {id: crash, capability: code, max_attempts: 1, prompt: "@crash"}
"""
    for tool in ("claude", "codex", "aider"):
        batch = await run(tmp_path, wf(tool, tasks))
        by = {r.task_id: r for r in batch.results}
        assert by["err"].state is TaskState.FAILED
        # codex's turn.failed carries no usage; the others report theirs when they fail
        assert (by["err"].attempts[0].usage is None) == (tool == "codex"), tool
        assert by["crash"].state is TaskState.FAILED
        assert "exited with status 3" in (by["crash"].error or ""), tool
    assert "claude ended error_during_execution" in str(
        (await run(tmp_path, wf("claude", tasks))).results[0].error
    )


async def test_a_hung_tool_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    tasks = '  - {id: h, capability: code, max_attempts: 1, timeout_s: 1.5, prompt: "@hang"}\n'
    batch = await run(tmp_path, wf("claude", tasks))
    (r,) = batch.results
    assert r.attempts[0].outcome is Outcome.TIMEOUT
    assert not process_alive(int(logged(tmp_path, "h", 1)["pid"]))  # type: ignore[call-overload]
    assert git(repo, "worktree", "list").count("\n") == 0  # its worktree is gone


async def test_max_turns_is_claudes_and_is_enforced(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    text = wf("claude", '  - {id: t, capability: code, max_attempts: 1, prompt: '
                        '"@write a=1\\n@write b=2"}\n').replace(
        "tool: claude}", "tool: claude, max_turns: 2, model: opus}")  # fmt: skip
    (r,) = (await run(tmp_path, text)).results
    assert r.state is TaskState.FAILED
    assert "claude ended error_max_turns" in (r.error or "")
    argv = logged(tmp_path, "t", 1)["argv"]
    assert isinstance(argv, list)
    assert argv[argv.index("--max-turns") + 1] == "2"
    assert argv[argv.index("--model") + 1] == "opus"


async def test_without_a_workspace_the_tool_works_in_the_run_directory(tmp_path: Path) -> None:
    tasks = """
  - id: w
    capability: code
    prompt: "@write out.txt=here"
    verify: {argv: [test, -f, out.txt]}
"""
    (r,) = (await run(tmp_path, wf("aider", tasks, workspace=False))).results
    assert r.state is TaskState.SUCCEEDED, r.error
    assert (tmp_path / "out.txt").read_text() == "here\n"
    assert r.attempts[0].usage == Usage(1000, 200, pytest.approx(0.0045))  # type: ignore[arg-type]


async def test_a_role_gives_its_system_prompt_and_its_check(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    text = wf("claude", """
  - {id: good, capability: test_generation, prompt: "@write tests/test_a.py=def test_a(): pass"}
  - id: bad
    capability: test_generation
    max_attempts: 1
    prompt: "@write tests/test_b.py=def test_b(): assert False"
""").replace("capabilities: {code: 1.0}", "role: test_generator")  # fmt: skip
    batch = await run(tmp_path, text)
    by = {r.task_id: r for r in batch.results}
    assert by["good"].state is TaskState.SUCCEEDED, by["good"].error
    assert by["bad"].state is TaskState.FAILED
    assert by["bad"].attempts[0].outcome is Outcome.VERIFY_FAILED
    assert "pytest" in (by["bad"].error or "")
    argv = logged(tmp_path, "good", 1)["argv"]
    assert isinstance(argv, list)
    assert argv[argv.index("--append-system-prompt") + 1].startswith("You write tests")
