"""Coding agents: Claude Code, Codex and aider driven headless (``runner``), their output
formats (``tools``), and command agents in a sandbox (``sandboxed``)."""

from metaagent.agents.coding.runner import CodingRunner
from metaagent.agents.coding.sandboxed import SandboxedCommandRunner
from metaagent.agents.coding.tools import ToolOptions, ToolResult

__all__ = ["CodingRunner", "SandboxedCommandRunner", "ToolOptions", "ToolResult"]
