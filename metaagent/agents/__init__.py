"""Agent runners: how an agent does one attempt (a Python function, a command, ...)."""

from metaagent.agents.base import AttemptContext, Runner
from metaagent.agents.command import CommandRunner
from metaagent.agents.function import FunctionRunner
from metaagent.agents.llm import LlmConfig, LlmRunner

__all__ = ["AttemptContext", "CommandRunner", "FunctionRunner", "LlmConfig", "LlmRunner", "Runner"]
