"""What the commands read: a workflow file and a journal, as arguments and options, opened or
rejected with exit code 2."""

from __future__ import annotations

import sqlite3
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metaagent.cli.console import err, invalid_input
from metaagent.errors import MetaAgentError
from metaagent.journal.sqlite import SqliteJournal
from metaagent.workflow.build import load_workflow

if TYPE_CHECKING:
    from rich.console import Console

    from metaagent.workflow.build import Workflow

WorkflowArgument = Annotated[Path, typer.Argument(help="Workflow YAML file.")]
RunIdArgument = Annotated[str, typer.Argument(help="Run id (see `metaagent runs`).")]
DbOption = Annotated[Path, typer.Option("--db", help="Journal file (SQLite).")]
JsonReportOption = Annotated[
    Path | None, typer.Option("--json", help="Write the run report as JSON to this file.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")]


class DurabilityChoice(StrEnum):
    normal = "normal"
    full = "full"


DurabilityOption = Annotated[
    DurabilityChoice,
    typer.Option(
        "--durability",
        help="normal: survives any process crash; full: also power loss (slower).",
    ),
]


def load_workflow_file(path: Path) -> Workflow:
    """The validated workflow at ``path``; exit 2 with the error naming file and field."""
    try:
        return load_workflow(path)
    except MetaAgentError as exc:
        raise invalid_input(exc) from None


def open_journal(
    db: Path, durability: DurabilityChoice, *, console: Console = err
) -> SqliteJournal:
    """Open (or create) the journal at ``db``; exit 2 naming ``--db`` if it cannot be.

    ``console`` is where the error goes.
    """
    try:
        return SqliteJournal(db, durability=durability.value)
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        raise invalid_input(f"--db {db}: {exc}", console=console) from None


def stored_journal(db: Path, *, console: Console = err) -> SqliteJournal:
    """Open the journal an earlier run left at ``db``; exit 2 if there is none, or unreadable."""
    if not db.exists():
        raise invalid_input(f"--db {db}: no journal there (run a workflow first)", console=console)
    return open_journal(db, DurabilityChoice.normal, console=console)
