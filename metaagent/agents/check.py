"""Running a task's ``verify`` command on an output: one place for the runtime's checks and the
coding runner's (which runs them in the task's worktree)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import TYPE_CHECKING

from metaagent.agents.command import expand
from metaagent.agents.process import ProcessLimits, run_process, tail
from metaagent.errors import VerificationFailed

if TYPE_CHECKING:
    from metaagent.core.tasks import AgentTask, VerifySpec


async def run_check(spec: VerifySpec, task: AgentTask, data: bytes, workdir: str) -> None:
    """Run the check in ``workdir`` with ``data`` on stdin and in the file ``{output_file}``
    names (``{task_id}``, ``{workdir}`` and ``{prompt}`` expand too); raise
    ``VerificationFailed`` with its output unless it exits 0 within ``spec.timeout_s``."""
    fd, path = tempfile.mkstemp(prefix=f"metaagent-{task.id}-", suffix=".out")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        values = {"output_file": path, "task_id": task.id, "workdir": workdir,
                  "prompt": task.prompt}  # fmt: skip
        argv = [expand(a, values) for a in spec.argv]
        try:
            async with asyncio.timeout(spec.timeout_s):
                done = await run_process(
                    argv, stdin=data, cwd=workdir, limits=ProcessLimits(memory_mb=None)
                )
        except TimeoutError:
            raise VerificationFailed(f"check {argv[0]} timed out after {spec.timeout_s}s") from None
        except OSError as exc:
            raise VerificationFailed(f"cannot start check {argv[0]!r}: {exc}") from exc
        if done.returncode != 0:
            detail = tail(done.stdout + b"\n" + done.stderr) or "(no output)"
            raise VerificationFailed(f"check {argv[0]} exited {done.returncode}: {detail}")
    finally:
        os.unlink(path)
