"""The ``metaagent`` command line: parse, call the library, render. No scheduling here.

Exit codes: 0 every task succeeded; 1 some task did not; 2 invalid input (bad workflow, bad
flags); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from metaagent.catalog import load_catalog
from metaagent.errors import MetaAgentError
from metaagent.graph import TaskGraph
from metaagent.progress import ProgressView, summary_table
from metaagent.runtime import Orchestrator, OrchestratorConfig
from metaagent.workflow import Workflow, load_workflow

if TYPE_CHECKING:
    from metaagent.batch import BatchResult
    from metaagent.events import Event

app = typer.Typer(
    name="metaagent",
    help="Run many agent tasks in parallel, each on the agent best suited to it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail_input(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(EXIT_INVALID)


def _load(path: Path) -> Workflow:
    try:
        return load_workflow(path)
    except MetaAgentError as exc:
        raise _fail_input(exc) from None


@app.command()
def run(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the run report as JSON to this file.")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Tasks running at once.")
    ] = None,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Directory the agents work in.")
    ] = Path("."),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
) -> None:
    """Run a workflow: live progress, then a summary table. Exit 0 if every task succeeded."""
    wf = _load(workflow)
    if not workdir.is_dir():
        raise _fail_input(ValueError(f"--workdir {workdir}: not a directory"))
    s = wf.settings
    config = OrchestratorConfig(
        max_concurrency=max_concurrency or s.max_concurrency or 16,
        max_queued=s.max_queued or max(10_000, len(wf.tasks)),
        default_timeout_s=s.default_timeout_s,
        routing=s.routing or "deterministic",
        seed=s.seed or 0,
        workdir=str(workdir.resolve()),
    )
    try:
        batch = asyncio.run(_execute(wf, config, quiet=quiet))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: running attempts were stopped[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MetaAgentError as exc:
        raise _fail_input(exc) from None
    out.print(summary_table(batch))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(batch.to_json(), indent=2, default=str) + "\n")
        out.print(f"report written to {json_out}")
    raise typer.Exit(EXIT_OK if batch.ok else EXIT_FAILED)


async def _execute(wf: Workflow, config: OrchestratorConfig, *, quiet: bool) -> BatchResult:
    roots = sum(1 for t in wf.tasks if not t.depends_on)
    view = ProgressView(len(wf.tasks), wf.agents, roots)
    live_ok = not quiet and err.is_terminal
    async with Orchestrator(wf.agents, config) as orch:
        if live_ok:
            with Live(view.render(0.0), console=err, refresh_per_second=8, transient=True) as live:
                handle = await orch.submit(wf.tasks, name=wf.name, on_event=view.on_event)
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                while not handle.done():
                    live.update(view.render(loop.time() - t0))
                    await asyncio.wait([asyncio.ensure_future(handle.result())], timeout=0.125)
                return await handle.result()

        def log(ev: Event) -> None:
            line = view.line(ev)
            if line is not None and not quiet:
                err.print(line, highlight=False, markup=False)

        handle = await orch.submit(wf.tasks, name=wf.name, on_event=log)
        return await handle.result()


@app.command()
def validate(workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")]) -> None:
    """Check a workflow without running it: schema, agents, capabilities, dependency cycles."""
    wf = _load(workflow)
    graph = TaskGraph(wf.tasks)
    length, path = graph.critical_path(lambda t: 1.0)
    out.print(
        f"[green]ok[/]: {wf.name}: {len(wf.agents)} agents, {len(wf.tasks)} tasks, "
        f"{int(length)} dependency levels (longest chain: {' -> '.join(path)})",
        highlight=False,
    )


@app.command()
def agents(
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="Catalog YAML (default: built-in).")
    ] = None,
) -> None:
    """List the roles of an agent catalog and their capabilities."""
    try:
        cat = load_catalog(catalog)
    except MetaAgentError as exc:
        raise _fail_input(exc) from None
    table = Table(title=f"{len(cat.roles)} roles ({cat.source})", title_justify="left")
    for col in ("role", "capabilities", "slots", "description"):
        table.add_column(col, overflow="fold")
    for role in cat.roles.values():
        caps = ", ".join(
            f"{c} {p:.2f}" for c, p in sorted(role.capabilities.items(), key=lambda kv: -kv[1])
        )
        table.add_row(role.role, caps, str(role.concurrency), role.description)
    out.print(table)


def main() -> None:
    """Entry point of the ``metaagent`` script."""
    if os.environ.get("NO_COLOR") is None and not sys.stdout.isatty():
        os.environ.setdefault("TERM", "dumb")
    app()


if __name__ == "__main__":
    main()
