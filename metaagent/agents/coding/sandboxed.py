"""A command agent run inside its agent's sandbox: the same runner, its command wrapped per
attempt (``metaagent.sandbox``) and what was made for it removed afterwards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.agents.command import CommandRunner, expand

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext
    from metaagent.sandbox import Prepared, Sandbox

__all__ = ["SandboxedCommandRunner"]


class SandboxedCommandRunner(CommandRunner):
    """A ``CommandRunner`` whose every attempt runs in ``sandbox``, its work directory (the
    command's ``cwd``, else the run's) writable."""

    __slots__ = ("_prepared", "sandbox")

    def __init__(self, inner: CommandRunner, sandbox: Sandbox) -> None:
        super().__init__(
            inner.argv, cwd=inner.cwd, env=inner.env, limits=inner.limits,
            max_output_mb=inner.max_output_mb, max_log_mb=inner.max_log_mb,
        )  # fmt: skip
        self.sandbox = sandbox
        self._prepared: dict[int, Prepared] = {}  # id(ctx) -> its attempt's sandbox

    def command_for(self, ctx: AttemptContext) -> list[str]:
        prepared = self._prepared.get(id(ctx))
        return super().command_for(ctx) if prepared is None else prepared.argv

    async def run(self, ctx: AttemptContext) -> object:
        workdir = expand(self.cwd, {"workdir": ctx.workdir}) if self.cwd else ctx.workdir
        prepared = self.sandbox.prepare(
            super().command_for(ctx), name=f"{ctx.run_id}-{ctx.task.id}-{ctx.attempt}",
            workdir=workdir, env=self.env,
        )  # fmt: skip
        self._prepared[id(ctx)] = prepared
        try:
            return await super().run(ctx)
        finally:
            del self._prepared[id(ctx)]
            await self.sandbox.cleanup(prepared)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "sandbox": self.sandbox.spec.to_json()}
