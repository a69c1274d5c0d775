"""``runner: {type: coding, tool: claude | codex | aider, ...}``: the config model and its
builder, registered in ``metaagent.agents.registry``."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from metaagent.agents.coding.runner import CodingRunner
from metaagent.agents.coding.tools import ToolOptions
from metaagent.agents.command import expand
from metaagent.agents.process import DEFAULT_MAX_LOG_MB, DEFAULT_MAX_OUTPUT_MB, ProcessLimits
from metaagent.agents.registry import (
    CaptureMb,
    CpuSeconds,
    EnvName,
    MemoryMb,
    NulFree,
    RunnerModel,
)
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from metaagent.agents.base import Runner
    from metaagent.agents.registry import BuildContext

__all__ = ["CodingRunnerModel", "build_coding"]


class CodingRunnerModel(RunnerModel):
    """A coding tool run headless per attempt (``metaagent.agents.coding``)."""

    type: Literal["coding"]
    tool: Literal["claude", "codex", "aider"]
    program: NulFree | None = None  # the executable; default the tool's name, on PATH
    model: NulFree | None = None
    args: list[NulFree] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, ge=1)  # claude only
    allowed_tools: list[NulFree] | None = None  # claude only
    system: NulFree = ""  # default: the role's system prompt
    role_verify: bool = True  # check tasks that name no `verify` with the role's preset
    env: dict[EnvName, NulFree] = Field(default_factory=dict)
    memory_limit_mb: MemoryMb = None
    cpu_limit_s: CpuSeconds = None
    max_output_mb: CaptureMb = DEFAULT_MAX_OUTPUT_MB
    max_log_mb: CaptureMb = DEFAULT_MAX_LOG_MB


def build_coding(m: CodingRunnerModel, ctx: BuildContext) -> Runner:
    program = expand(m.program, ctx.values) if m.program else m.tool
    if m.tool != "claude":
        for name in ("max_turns", "allowed_tools"):
            if getattr(m, name) is not None:
                raise WorkflowError(
                    f"{name} is an option of tool claude only, not {m.tool}",
                    where=f"{ctx.where}.{name}",
                )
    path = m.env.get("PATH", os.environ.get("PATH", os.defpath))
    found = shutil.which(program, path=path)
    if found is None:
        raise WorkflowError(
            f"program {program!r} (tool {m.tool}) is not found"
            + ("" if "/" in program else " on PATH")
            + "; install it or name it with `program:`",
            where=f"{ctx.where}.program" if m.program else f"{ctx.where}.tool",
        )
    options = ToolOptions(
        m.tool, found, m.model, tuple(m.args), m.max_turns,
        None if m.allowed_tools is None else tuple(m.allowed_tools),
    )  # fmt: skip
    return CodingRunner(
        options, system=m.system, env=m.env,
        limits=ProcessLimits(memory_mb=m.memory_limit_mb, cpu_s=m.cpu_limit_s),
        max_output_mb=m.max_output_mb, max_log_mb=m.max_log_mb, role_verify=m.role_verify,
    )  # fmt: skip
