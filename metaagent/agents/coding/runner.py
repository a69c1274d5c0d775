"""The ``coding`` runner: Claude Code, Codex or aider run headless on one task, in the task's
own git worktree when the workflow names a ``workspace``, inside the agent's sandbox when it
has one.

One attempt: check out the task's worktree (``metaagent.workspace``), run the tool there with
the prompt (the role's system prompt, the task, its dependencies' outputs, and what was wrong
with the previous attempt: a failed check's output or a merge conflict's diff), parse its
machine output (``tools``), keep its usage on the attempt, commit what it changed, run the
task's check in the worktree (or the role's preset check), and merge the branch into the run
branch. The tool's stderr is the attempt's log. The tool also gets ``METAAGENT_RUN_ID``,
``METAAGENT_TASK_ID``, ``METAAGENT_ATTEMPT`` and ``METAAGENT_WORKDIR`` in its environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.agents.check import run_check as check_output
from metaagent.agents.coding.tools import ToolOptions, ToolResult, parse_tool, tool_argv
from metaagent.agents.llm import build_user_message
from metaagent.agents.process import (
    DEFAULT_MAX_LOG_MB,
    DEFAULT_MAX_OUTPUT_MB,
    ProcessLimits,
    cap_bytes,
    log_text,
    run_process,
    tail,
)
from metaagent.errors import AgentCrash, AgentFailure, VerificationFailed
from metaagent.workspace import GitError, MergeConflict, WorkspaceError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.agents.base import AttemptContext
    from metaagent.core.tasks import VerifySpec
    from metaagent.sandbox import Sandbox
    from metaagent.workspace import Checkout, Workspace

__all__ = ["CodingRunner"]

_WORKSPACE_NOTE = (
    "You are working in a git checkout of the project at {workdir}, made for this task. "
    "Change files there only. Do not commit: your changes are committed and merged for you."
)


class CodingRunner:
    """Runs a coding tool once per attempt. ``system`` is the system prompt (a role's
    template when the agent is bound to a role, see ``bind``); ``verify`` the check used for a
    task that names none (a role's preset)."""

    kind = "coding"

    __slots__ = ("env", "limits", "max_log_mb", "max_output_mb", "options", "role_verify",
                 "sandbox", "system", "verify", "workspace")  # fmt: skip

    def __init__(
        self,
        options: ToolOptions,
        *,
        system: str = "",
        env: Mapping[str, str] | None = None,
        limits: ProcessLimits | None = None,
        max_output_mb: float = DEFAULT_MAX_OUTPUT_MB,
        max_log_mb: float = DEFAULT_MAX_LOG_MB,
        role_verify: bool = True,
    ) -> None:
        cap_bytes(max_output_mb, "max_output_mb")
        cap_bytes(max_log_mb, "max_log_mb")
        self.options = options
        self.system = system
        self.env = dict(env or {})
        self.limits = limits or ProcessLimits(memory_mb=None)
        self.max_output_mb = max_output_mb
        self.max_log_mb = max_log_mb
        self.workspace: Workspace | None = None
        self.sandbox: Sandbox | None = None
        self.verify: VerifySpec | None = None
        self.role_verify = role_verify

    @property
    def verifies_output(self) -> bool:
        """True in a workspace: the task's check runs here, in the worktree, before the merge
        (the runtime then does not run it again in its own directory)."""
        return self.workspace is not None

    def bind(
        self,
        *,
        workspace: Workspace | None = None,
        sandbox: Sandbox | None = None,
        role_system: str = "",
        role_verify: VerifySpec | None = None,
    ) -> None:
        """Attach the workflow's workspace, the agent's sandbox and its role's presets (a
        system prompt the agent's own ``system`` overrides)."""
        self.workspace = workspace
        self.sandbox = sandbox
        if not self.system:
            self.system = role_system
        self.verify = role_verify if self.role_verify else None

    def prompt_for(self, ctx: AttemptContext, workdir: str) -> str:
        text = build_user_message(ctx)
        if self.workspace is not None:
            text = _WORKSPACE_NOTE.format(workdir=workdir) + "\n\n" + text
        return text

    async def run(self, ctx: AttemptContext) -> object:
        ws = self.workspace
        co: Checkout | None = None
        failed = True
        try:
            if ws is not None:
                deps = ctx.task.depends_on
                co = await ws.checkout(ctx.run_id, ctx.task.id, deps)
            workdir = str(co.path) if co is not None else ctx.workdir
            result = await self._attempt(ctx, workdir, co)
            out: dict[str, object] = {"tool": self.options.tool, "result": result.text}
            out["usage"] = None if result.usage is None else result.usage.to_json()
            out.update(result.extra)
            if co is not None:
                out.update(await self._finish(ctx, co, out))
            failed = False
            return out
        except (GitError, WorkspaceError) as exc:
            raise AgentFailure(f"workspace: {exc}") from exc
        finally:
            if co is not None and ws is not None:
                with contextlib.suppress(GitError, OSError):
                    await ws.release(co, failed=failed)

    async def _attempt(self, ctx: AttemptContext, workdir: str, co: Checkout | None) -> ToolResult:
        """Run the tool once in ``workdir``; its usage goes on the attempt even when it fails."""
        opts = self.options
        scratch = tempfile.mkdtemp(prefix="metaagent-coding-")
        last = os.path.join(scratch, "last-message.txt")
        env = dict(self.env)
        env.update(
            METAAGENT_RUN_ID=ctx.run_id, METAAGENT_TASK_ID=ctx.task.id,
            METAAGENT_ATTEMPT=str(ctx.attempt), METAAGENT_WORKDIR=workdir,
        )  # fmt: skip
        argv = tool_argv(opts, self.prompt_for(ctx, workdir), self.system, last)
        prepared = None
        if self.sandbox is not None:
            read_only = [str(_git_common_dir(co))] if co is not None else []
            prepared = self.sandbox.prepare(
                argv, name=f"{ctx.run_id}-{ctx.task.id}-{ctx.attempt}", workdir=workdir,
                env=env, read_only=read_only, writable=[scratch],
            )  # fmt: skip
            argv = prepared.argv

        def keep_log(data: bytes) -> None:
            ctx.log = log_text(data)

        try:
            done = await run_process(
                argv, stdin=None, cwd=workdir, env=env, limits=self.limits,
                max_output_bytes=cap_bytes(self.max_output_mb, "max_output_mb"),
                max_log_bytes=cap_bytes(self.max_log_mb, "max_log_mb"), on_stderr=keep_log,
            )  # fmt: skip
            last_message = _read_if_there(last)
        except OSError as exc:
            raise AgentFailure(f"cannot start {argv[0]!r}: {exc}") from exc
        finally:
            if prepared is not None and self.sandbox is not None:
                await self.sandbox.cleanup(prepared)
            shutil.rmtree(scratch, ignore_errors=True)
        result = parse_tool(opts.tool, done.stdout, last_message)
        ctx.usage = result.usage
        if done.signal_name is not None:
            raise AgentCrash(f"{opts.tool} was killed by {done.signal_name}")
        if done.returncode != 0:
            why = result.error or tail(done.stderr) or tail(done.stdout, 500) or "(no output)"
            raise AgentFailure(f"{opts.tool} exited with status {done.returncode}: {why}")
        if result.error is not None:
            raise AgentFailure(result.error)
        return result

    async def _finish(
        self, ctx: AttemptContext, co: Checkout, out: dict[str, object]
    ) -> dict[str, object]:
        """Commit, check in the worktree, merge into the run branch."""
        assert self.workspace is not None
        task = ctx.task
        head, files = await self.workspace.commit(
            co, f"metaagent: task {task.id} (attempt {ctx.attempt}, {self.options.tool})"
        )
        out.update(branch=co.branch, commit=head, files=files)
        check = task.verify or self.verify
        if check is not None:
            await run_check(check, ctx, out, str(co.path))
        try:
            merged = await self.workspace.merge(co, head, f"metaagent: merge task {task.id}")
        except MergeConflict as exc:
            raise VerificationFailed(str(exc)) from exc
        return {"run_branch": co.run_branch, "merged": merged}

    def describe(self) -> dict[str, object]:
        o = self.options
        return {
            "type": self.kind,
            "tool": o.tool,
            "program": o.program,
            "model": o.model,
            "args": list(o.args),
            "max_turns": o.max_turns,
            "allowed_tools": None if o.allowed_tools is None else list(o.allowed_tools),
            "sandbox": None if self.sandbox is None else self.sandbox.spec.to_json(),
            "workspace": None if self.workspace is None else self.workspace.describe(),
        }


def _read_if_there(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return None


def _git_common_dir(co: Checkout | None) -> Path:
    """The main repository's ``.git``, which a worktree's ``.git`` file points into: visible
    (read-only) in a sandbox, so that git works there."""
    assert co is not None
    text = (co.path / ".git").read_text().strip()
    gitdir = Path(text.removeprefix("gitdir:").strip())
    return gitdir.parent.parent  # .git/worktrees/NAME -> .git


async def run_check(spec: VerifySpec, ctx: AttemptContext, output: object, workdir: str) -> None:
    """The task's check in ``workdir``: ``VerificationFailed`` with its output unless it exits
    0. Placeholders as in the runtime's checks (``{workdir}``, ``{task_id}``, ``{prompt}``;
    ``{output_file}`` holds the output as JSON)."""
    import json

    await check_output(spec, ctx.task, json.dumps(output, default=str).encode(), workdir)
