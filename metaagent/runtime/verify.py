"""Checking an attempt's output with the task's ``verify`` command.

A task with ``verify`` succeeds only when its check exits 0. The output is given on stdin and in
a temporary file named by ``{output_file}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from metaagent.agents.check import run_check

if TYPE_CHECKING:
    from metaagent.core.tasks import AgentTask, VerifySpec


def output_text(output: object) -> str:
    """The output as the check sees it: text as is, anything else as JSON."""
    return output if isinstance(output, str) else json.dumps(output, default=str)


async def verify_output(spec: VerifySpec, task: AgentTask, output: object, workdir: str) -> None:
    """Run the check; raise ``VerificationFailed`` with its output when it does not pass.

    The check's own time limit is ``spec.timeout_s`` (exceeding it fails the check).
    """
    await run_check(spec, task, output_text(output).encode(), workdir)
