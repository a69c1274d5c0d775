"""The ``metaagent`` command line: the Typer app, its commands in help order, and ``main``.

Each command lives in the module of its group and only parses, calls the library and renders.
Exit codes: 0 every task succeeded; 1 some task did not; 2 invalid input (bad workflow, bad
flags); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import typer

from metaagent.cli.definitions import agents_command, validate_command
from metaagent.cli.explain import explain_command
from metaagent.cli.run import resume_command, run_command
from metaagent.cli.simulate import simulate_command
from metaagent.cli.stored import runs_command, show_command

if TYPE_CHECKING:
    from collections.abc import Callable

app = typer.Typer(
    name="metaagent",
    help="Run many agent tasks in parallel, each on the agent best suited to it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMANDS: dict[str, Callable[..., None]] = {
    "run": run_command,
    "runs": runs_command,
    "show": show_command,
    "resume": resume_command,
    "validate": validate_command,
    "agents": agents_command,
    "simulate": simulate_command,
    "explain": explain_command,
}
"""Command name -> function, in the order ``metaagent --help`` lists them."""

for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def main() -> None:
    """Entry point of the ``metaagent`` script."""
    if os.environ.get("NO_COLOR") is None and not sys.stdout.isatty():
        os.environ.setdefault("TERM", "dumb")
    app()


if __name__ == "__main__":
    main()
