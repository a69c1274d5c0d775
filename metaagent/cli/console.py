"""Where the command line writes, the exit codes it returns, and how it rejects invalid input."""

from __future__ import annotations

from enum import IntEnum

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)
# ``simulate`` and ``explain`` print errors unwrapped: a long one stays whole, to be copied.
err_unwrapped = Console(stderr=True, soft_wrap=True)


class ExitCode(IntEnum):
    """The exit codes of every command."""

    OK = 0  # every task succeeded (simulate: the deadline is met)
    FAILED = 1  # some task did not succeed, or the run could not finish
    INVALID = 2  # invalid input: a bad workflow, bad flags, no such run
    INTERRUPTED = 130  # Ctrl-C


def invalid_input(message: object, *, console: Console = err) -> typer.Exit:
    """Print ``error: message`` to ``console`` and return the exit (2) to raise."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(ExitCode.INVALID)
