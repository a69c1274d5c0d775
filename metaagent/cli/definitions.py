"""``metaagent validate`` and ``metaagent agents``: look at a workflow file or an agent catalog
without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from metaagent.catalog import load_catalog
from metaagent.cli.console import invalid_input, out
from metaagent.cli.inputs import WorkflowArgument, load_workflow_file
from metaagent.core.graph import TaskGraph
from metaagent.errors import MetaAgentError
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.workflow.settings import orchestrator_config


def validate_command(workflow: WorkflowArgument) -> None:
    """Check a workflow without running it: schema, agents, capabilities, dependency cycles,
    and the pool its settings allow (``min_instances`` within ``max_agents``)."""
    wf = load_workflow_file(workflow)
    config = orchestrator_config(wf.settings, workdir=Path.cwd(), task_count=len(wf.tasks))
    try:
        Orchestrator(wf.agents, config)  # builds the pool as ``run`` would; no I/O
    except MetaAgentError as exc:
        raise invalid_input(exc) from None
    graph = TaskGraph(wf.tasks)
    length, path = graph.critical_path(lambda t: 1.0)
    out.print(
        f"[green]ok[/]: {wf.name}: {len(wf.agents)} agents, {len(wf.tasks)} tasks, "
        f"{int(length)} dependency levels (longest chain: {' -> '.join(path)})",
        highlight=False,
    )


def agents_command(
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="Catalog YAML (default: built-in).")
    ] = None,
) -> None:
    """List the roles of an agent catalog and their capabilities."""
    try:
        cat = load_catalog(catalog)
    except MetaAgentError as exc:
        raise invalid_input(exc) from None
    table = Table(title=f"{len(cat.roles)} roles ({cat.source})", title_justify="left")
    for col in ("role", "capabilities", "slots", "description"):
        table.add_column(col, overflow="fold")
    for role in cat.roles.values():
        caps = ", ".join(
            f"{c} {p:.2f}" for c, p in sorted(role.capabilities.items(), key=lambda kv: -kv[1])
        )
        table.add_row(role.role, caps, str(role.concurrency), role.description)
    out.print(table)
