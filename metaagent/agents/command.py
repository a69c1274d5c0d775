"""Agents that are commands: any CLI (coding agents included), one process per attempt.

``argv`` may hold placeholders ``{prompt}``, ``{task_id}``, ``{capability}``, ``{workdir}``,
``{run_id}`` and ``{attempt}``; other braces are left alone. The attempt is sent as JSON on stdin.
Stdout is the output (parsed as JSON when it is JSON), kept up to ``max_output_mb`` (the rest is
dropped with a marker); stderr, kept up to ``max_log_mb`` (head and tail), is the attempt's log,
whether it succeeded or not. A non-zero exit fails the attempt with the tail of stderr; death by
a signal is a crash.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from metaagent.agents.process import (
    DEFAULT_MAX_LOG_MB,
    DEFAULT_MAX_OUTPUT_MB,
    ProcessLimits,
    cap_bytes,
    log_text,
    run_process,
    tail,
)
from metaagent.errors import AgentCrash, AgentFailure

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.agents.base import AttemptContext

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def expand(template: str, values: Mapping[str, str]) -> str:
    """Replace known ``{name}`` placeholders in one pass; unknown ones stay as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def parse_output(data: bytes) -> object:
    """Stdout as JSON when it parses as JSON, else as stripped text."""
    text = data.decode("utf-8", errors="replace").strip()
    if text[:1] in ("{", "[", '"'):
        try:
            parsed: object = json.loads(text)
        except ValueError:
            return text
        return parsed
    return text


class CommandRunner:
    """Runs ``argv`` once per attempt, in ``cwd`` with ``env`` added to the environment.

    ``max_output_mb`` caps the stdout kept per attempt, ``max_log_mb`` the stderr kept as its
    log; ``ValueError`` unless both are non-negative.
    """

    kind = "command"

    __slots__ = ("argv", "cwd", "env", "limits", "max_log_mb", "max_output_mb")

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        limits: ProcessLimits | None = None,
        max_output_mb: float = DEFAULT_MAX_OUTPUT_MB,
        max_log_mb: float = DEFAULT_MAX_LOG_MB,
    ) -> None:
        if isinstance(argv, str) or not argv:
            raise ValueError("argv must be a non-empty list of strings")
        cap_bytes(max_output_mb, "max_output_mb")
        cap_bytes(max_log_mb, "max_log_mb")
        self.argv = tuple(argv)
        self.cwd = cwd
        self.env = dict(env or {})
        self.limits = limits or ProcessLimits()
        self.max_output_mb = max_output_mb
        self.max_log_mb = max_log_mb

    def command_for(self, ctx: AttemptContext) -> list[str]:
        values = {
            "prompt": ctx.task.prompt,
            "task_id": ctx.task.id,
            "capability": ctx.task.capability,
            "workdir": ctx.workdir,
            "run_id": ctx.run_id,
            "attempt": str(ctx.attempt),
        }
        return [expand(a, values) for a in self.argv]

    async def run(self, ctx: AttemptContext) -> object:
        argv = self.command_for(ctx)
        stdin = json.dumps(ctx.to_json(), default=str).encode()
        cwd = expand(self.cwd, {"workdir": ctx.workdir}) if self.cwd else ctx.workdir

        def keep_log(data: bytes) -> None:  # also when the attempt is stopped (a timeout)
            ctx.log = log_text(data)

        try:
            done = await run_process(
                argv,
                stdin=stdin,
                cwd=cwd,
                env=self.env,
                limits=self.limits,
                max_output_bytes=cap_bytes(self.max_output_mb, "max_output_mb"),
                max_log_bytes=cap_bytes(self.max_log_mb, "max_log_mb"),
                on_stderr=keep_log,
            )
        except OSError as exc:
            raise AgentFailure(f"cannot start {argv[0]!r}: {exc}") from exc
        if done.signal_name is not None:
            raise AgentCrash(
                f"{argv[0]} was killed by {done.signal_name}"
                + (f": {tail(done.stderr, 500)}" if done.stderr.strip() else "")
            )
        if done.returncode != 0:
            detail = tail(done.stderr) or "(no stderr)"
            raise AgentFailure(f"{argv[0]} exited with status {done.returncode}: {detail}")
        return parse_output(done.stdout)

    def describe(self) -> dict[str, object]:
        return {
            "type": self.kind,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "memory_limit_mb": self.limits.memory_mb,
        }
