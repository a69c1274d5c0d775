"""The ``metaagent`` command line: the Typer app, its commands in help order, and ``main``.

Each command lives in the module of its group and only parses, calls the library and renders.
Exit codes: 0 every task succeeded; 1 some task did not; 2 invalid input (bad workflow, bad
flags, no such run, a run another process owns); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from metaagent import __version__
from metaagent.cli.cancel import cancel_command
from metaagent.cli.definitions import agents_command, validate_command
from metaagent.cli.explain import explain_command
from metaagent.cli.gc import gc_command
from metaagent.cli.logs import logs_command
from metaagent.cli.mcp import mcp_command
from metaagent.cli.report import report_command
from metaagent.cli.retry import retry_command
from metaagent.cli.run import resume_command, run_command
from metaagent.cli.serve import serve_command
from metaagent.cli.simulate import simulate_command
from metaagent.cli.stored import runs_command, show_command
from metaagent.cli.watch import watch_command

if TYPE_CHECKING:
    from collections.abc import Callable

# Help is click's plain layout, not rich's panels: rich cuts option names (``--target-utilisat…``)
# to fit 80 columns, click wraps only the help texts.
app = typer.Typer(
    name="metaagent",
    help="Run many agent tasks in parallel, each on the agent best suited to it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

COMMANDS: dict[str, Callable[..., None]] = {
    "run": run_command,
    "runs": runs_command,
    "show": show_command,
    "logs": logs_command,
    "watch": watch_command,
    "resume": resume_command,
    "retry": retry_command,
    "cancel": cancel_command,
    "gc": gc_command,
    "validate": validate_command,
    "agents": agents_command,
    "simulate": simulate_command,
    "explain": explain_command,
    "report": report_command,
    "serve": serve_command,
    "mcp": mcp_command,
}
"""Command name -> function, in the order ``metaagent --help`` lists them."""

for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def _print_version(asked: bool) -> None:
    if asked:
        sys.stdout.write(f"metaagent {__version__}\n")
        raise typer.Exit


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run many agent tasks in parallel, each on the agent best suited to it."""


def main() -> None:
    """Entry point of the ``metaagent`` script."""
    if os.environ.get("NO_COLOR") is None and not sys.stdout.isatty():
        os.environ.setdefault("TERM", "dumb")
    app()


if __name__ == "__main__":
    main()
