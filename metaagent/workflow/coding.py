"""What a workflow adds to its agents' runners at load: the workspace coding agents share,
each agent's sandbox (checked now: one that cannot be set up is an error naming the agent and
the reason), and the presets of the role an agent is bound to."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.agents.coding import CodingRunner, SandboxedCommandRunner
from metaagent.agents.command import CommandRunner, expand
from metaagent.agents.llm import LlmRunner
from metaagent.catalog.presets import role_preset
from metaagent.core.tasks import VerifySpec
from metaagent.errors import WorkflowError
from metaagent.sandbox import SandboxSpec, SandboxUnavailable, make_sandbox
from metaagent.workspace import Workspace, WorkspaceError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.agents.base import Runner
    from metaagent.sandbox import Sandbox
    from metaagent.workflow.schema import AgentModel, WorkspaceModel

__all__ = ["PRESET_CHECK_TIMEOUT_S", "attach", "make_workspace"]

PRESET_CHECK_TIMEOUT_S = 600.0
"""The time limit of a role's preset check."""


def make_workspace(model: WorkspaceModel | None, base_dir: Path, source: str) -> Workspace | None:
    """The workflow's workspace, checked: a git repository's top level and a base commit."""
    if model is None:
        return None
    repo = Path(model.repo)
    ws = Workspace(
        repo if repo.is_absolute() else base_dir / repo, model.base,
        keep_failed=model.keep_worktrees,
    )  # fmt: skip
    try:
        ws.check()
    except WorkspaceError as exc:
        raise WorkflowError(str(exc), where=f"{source}: workspace") from None
    return ws


def _sandbox(a: AgentModel, where: str) -> Sandbox | None:
    m = a.sandbox
    if m is None or m.type == "none":
        return None
    spec = SandboxSpec(m.type, m.network, m.memory_mb, m.pids, m.image, tuple(m.writable))
    try:
        return make_sandbox(spec)
    except SandboxUnavailable as exc:
        raise WorkflowError(
            f"agent {a.name!r} asks for a {m.type} sandbox, which cannot be set up here: {exc}",
            where=f"{where}.sandbox",
        ) from None


def attach(
    runner: Runner,
    a: AgentModel,
    role: str | None,
    workspace: Workspace | None,
    values: Mapping[str, str],
    where: str,
) -> Runner:
    """``runner`` with the agent's sandbox, the workflow's workspace and its role's presets."""
    boxable = isinstance(runner, CodingRunner) or type(runner) is CommandRunner
    if a.sandbox is not None and a.sandbox.type != "none" and not boxable:
        raise WorkflowError(
            f"runner type {runner.kind!r} cannot run in a sandbox (coding and command can)",
            where=f"{where}.sandbox",
        )
    sandbox = _sandbox(a, where)
    preset = role_preset(role)
    if isinstance(runner, CodingRunner):
        check = None
        if preset.verify is not None:
            argv = tuple(expand(x, values) for x in preset.verify)
            check = VerifySpec(argv, PRESET_CHECK_TIMEOUT_S)
        runner.bind(
            workspace=workspace, sandbox=sandbox, role_system=preset.system, role_verify=check
        )
        return runner
    if isinstance(runner, LlmRunner) and preset.system and not runner.config.system:
        runner.config = replace(runner.config, system=preset.system)
    if sandbox is not None and isinstance(runner, CommandRunner):
        return SandboxedCommandRunner(runner, sandbox)
    return runner
