"""``metaagent mcp``: the MCP server over stdio, for AI coding assistants (docs/mcp.md).

Embedded by default: its own orchestrator on the journal ``--db``. With ``--server URL`` (or
``METAAGENT_SERVER``, token in ``METAAGENT_TOKEN``) it forwards to a running ``metaagent serve``,
so the assistant, the dashboard and the CLI see the same runs. Needs the ``mcp`` extra. Exit 0
when the client closes stdin; 2 for bad options or a server that cannot be reached; 143 / 130
after SIGTERM / SIGINT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from metaagent.cli.console import invalid_input
from metaagent.cli.inputs import DbOption  # noqa: TC001 (typer reads it at run time)
from metaagent.cli.remote import ServerOption  # noqa: TC001
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.workflow.schema import SettingsModel
from metaagent.workflow.settings import Overrides, orchestrator_config


def mcp_command(
    db: DbOption = DEFAULT_PATH,
    server: ServerOption = None,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Directory the agents work in (embedded).")
    ] = Path("."),
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Tasks running at once.")
    ] = None,
) -> None:
    """Serve the MCP tools (submit, wait, explain, cancel runs) over stdio for an assistant."""
    try:
        from metaagent.mcp.stdio import StartError, serve_stdio
    except ImportError as exc:  # the mcp extra is not installed
        raise invalid_input(f"{exc}: install it with pip install 'metaagent[mcp]'") from None
    if not workdir.is_dir():
        raise invalid_input(f"--workdir {workdir}: not a directory")
    flags = Overrides(max_concurrency=max_concurrency)
    config = orchestrator_config(SettingsModel(), flags, workdir=workdir, task_count=0)
    token = os.environ.get("METAAGENT_TOKEN", "")
    try:
        serve_stdio(db=db, config=config, server=server or None, token=token)
    except StartError as exc:
        raise invalid_input(exc) from None
    except OSError as exc:
        raise invalid_input(f"--db {db}: {exc}") from None
