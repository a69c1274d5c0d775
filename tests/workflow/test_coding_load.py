"""Loading coding agents, workspaces and sandboxes: every mistake is a ``WorkflowError`` naming
the agent or field and the reason, before anything runs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from coding_support import FAKES, make_repo

from metaagent.agents.coding import CodingRunner, SandboxedCommandRunner
from metaagent.errors import WorkflowError
from metaagent.workflow.build import parse_workflow_text

if TYPE_CHECKING:
    from pathlib import Path

TASKS = "tasks:\n  - {id: t, capability: code}\n"


def agent(runner: str, extra: str = "") -> str:
    return (
        f"name: w\n{extra}agents:\n  - name: coder\n    capabilities: {{code: 1.0}}\n"
        f"    runner: {runner}\n"
    )


@pytest.fixture(autouse=True)
def fakes_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")


def load(text: str, tmp: Path) -> object:
    return parse_workflow_text(text, source="wf.yaml", base_dir=tmp)


def test_a_coding_agent_loads_with_its_workspace(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    wf = parse_workflow_text(
        agent("{type: coding, tool: codex, model: o4-mini}", "workspace: {repo: repo}\n") + TASKS,
        base_dir=tmp_path,
    )
    runner = wf.agents[0].runner
    assert isinstance(runner, CodingRunner)
    assert runner.workspace is wf.workspace
    assert runner.verifies_output
    assert runner.describe()["tool"] == "codex"
    assert runner.describe()["workspace"] == {
        "repo": str(tmp_path / "repo"), "base": "HEAD", "keep_failed": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (agent("{type: coding, tool: codex, max_turns: 3}") + TASKS,
         "agents[0] (name 'coder').runner.max_turns: max_turns is an option of tool claude only"),
        (agent("{type: coding, tool: aider, allowed_tools: [Read]}") + TASKS,
         "allowed_tools is an option of tool claude only, not aider"),
        (agent("{type: coding, tool: claude, program: /nope/claude}") + TASKS,
         ".runner.program: program '/nope/claude' (tool claude) is not found"),
        (agent("{type: coding, tool: gemini}") + TASKS, "tool"),
        (agent("{type: coding, tool: claude}", "workspace: {repo: nowhere}\n") + TASKS,
         "wf.yaml: workspace: repo"),
        (agent("{type: coding, tool: claude}", "workspace: {repo: repo, base: nope}\n") + TASKS,
         "base 'nope' cannot be used"),
    ],
)  # fmt: skip
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    make_repo(tmp_path / "repo")
    with pytest.raises(WorkflowError) as err:
        load(text, tmp_path)
    assert message in " ".join(str(err.value).split())


def test_a_program_missing_from_path_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WorkflowError, match=r"program 'aider' \(tool aider\) is not found on PATH"):
        load(agent("{type: coding, tool: aider}") + TASKS, tmp_path)


def test_a_sandbox_that_cannot_be_set_up_is_an_error_naming_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}/nonexistent")  # no bwrap, no docker
    text = agent("{type: coding, tool: claude}") + "    sandbox: {type: bwrap}\n" + TASKS
    with pytest.raises(WorkflowError) as err:
        load(text, tmp_path)
    message = str(err.value)
    assert "agents[0] (name 'coder').sandbox" in message
    assert "agent 'coder' asks for a bwrap sandbox, which cannot be set up here" in message
    assert "bwrap is not installed" in message
    text = agent("{type: coding, tool: claude}") + "    sandbox: {type: docker}\n" + TASKS
    with pytest.raises(WorkflowError, match="a docker sandbox needs `image`"):
        load(text, tmp_path)


def test_sandboxes_wrap_command_agents_and_refuse_other_kinds(tmp_path: Path) -> None:
    none = "    sandbox: {type: none}\n"
    wf = parse_workflow_text(agent("{type: command, argv: ['true']}") + none + TASKS)
    assert not isinstance(wf.agents[0].runner, SandboxedCommandRunner)
    bwrap = "    sandbox: {type: bwrap}\n"
    text = agent("{type: function, function: 'os.path:join'}") + bwrap + TASKS
    with pytest.raises(WorkflowError) as err:
        load(text, tmp_path)
    assert "(name 'coder').sandbox: runner type 'function' cannot run in a sandbox" in str(
        err.value
    )
