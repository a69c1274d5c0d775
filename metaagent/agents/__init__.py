"""Agent runners: how an agent does one attempt (a Python function, a command, ...)."""

from metaagent.agents.base import AttemptContext, Runner
from metaagent.agents.command import CommandRunner
from metaagent.agents.function import FunctionRunner

__all__ = ["AttemptContext", "CommandRunner", "FunctionRunner", "Runner"]
