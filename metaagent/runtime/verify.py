"""Checking an attempt's output with the task's ``verify`` command.

A task with ``verify`` succeeds only when its check exits 0. The output is given on stdin and in
a temporary file named by ``{output_file}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from typing import TYPE_CHECKING

from metaagent.agents.command import expand
from metaagent.agents.process import ProcessLimits, run_process, tail
from metaagent.errors import VerificationFailed

if TYPE_CHECKING:
    from metaagent.core.tasks import AgentTask, VerifySpec


def output_text(output: object) -> str:
    """The output as the check sees it: text as is, anything else as JSON."""
    return output if isinstance(output, str) else json.dumps(output, default=str)


async def verify_output(spec: VerifySpec, task: AgentTask, output: object, workdir: str) -> None:
    """Run the check; raise ``VerificationFailed`` with its output when it does not pass.

    The check's own time limit is ``spec.timeout_s`` (exceeding it fails the check).
    """
    data = output_text(output).encode()
    fd, path = tempfile.mkstemp(prefix=f"metaagent-{task.id}-", suffix=".out")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        values = {
            "output_file": path,
            "task_id": task.id,
            "workdir": workdir,
            "prompt": task.prompt,
        }
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
