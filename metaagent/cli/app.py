"""The ``metaagent`` command line: parse, call the library, render. No scheduling here.

Exit codes: 0 every task succeeded; 1 some task did not; 2 invalid input (bad workflow, bad
flags); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from metaagent.catalog import load_catalog
from metaagent.cli import tools as cli_tools
from metaagent.cli.progress import ProgressView, agents_table, summary_table
from metaagent.core.graph import TaskGraph
from metaagent.core.pool import HealthPolicy
from metaagent.core.scaling import PoolPolicy
from metaagent.errors import MetaAgentError, RunFailed
from metaagent.journal import JournalError
from metaagent.journal.sqlite import DEFAULT_PATH, SqliteJournal
from metaagent.report.stored import stored_report
from metaagent.runtime.config import OrchestratorConfig
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.workflow.build import Workflow, load_workflow
from metaagent.workflow.identity import batch_key

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from metaagent.report.batch import BatchResult
    from metaagent.runtime.events import Event
    from metaagent.runtime.handle import RunHandle

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
_T = TypeVar("_T")

DbOption = Annotated[Path, typer.Option("--db", help="Journal file (SQLite).")]


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
    max_agents: Annotated[
        int | None, typer.Option("--max-agents", min=1, help="Agent instances at most (50).")
    ] = None,
    max_queued: Annotated[
        int | None,
        typer.Option("--max-queued", min=1, help="Accepted unfinished tasks at most (10,000)."),
    ] = None,
    spawn_threshold: Annotated[
        int | None,
        typer.Option("--spawn-threshold", min=0, help="Queue depth that grows the pool (5)."),
    ] = None,
    idle_timeout_s: Annotated[
        float | None,
        typer.Option("--idle-timeout", min=0.001, help="Idle seconds that stop an instance (60)."),
    ] = None,
    target_utilisation: Annotated[
        float | None,
        typer.Option(
            "--target-utilisation",
            min=0.0,
            max=1.0,
            help="Retire idle instances while busy slots would fill fewer to this share "
            "(0.9; 0: never).",
        ),
    ] = None,
    scale_up_window_s: Annotated[
        float | None,
        typer.Option(
            "--scale-up-window",
            min=0.0,
            help="Seconds the queue depth is averaged over before it grows the pool (5; 0: now).",
        ),
    ] = None,
    utilisation_window_s: Annotated[
        float | None,
        typer.Option(
            "--utilisation-window",
            min=0.0,
            help="Seconds the busy slots are averaged over for the target utilisation (20).",
        ),
    ] = None,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Directory the agents work in.")
    ] = Path("."),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
    db: DbOption = DEFAULT_PATH,
    durability: DurabilityOption = DurabilityChoice.normal,
    journal: Annotated[
        bool, typer.Option("--journal/--no-journal", help="Record the run (to resume it).")
    ] = True,
) -> None:
    """Run a workflow: live progress, then a summary table. Exit 0 if every task succeeded.

    The run is journaled; running the same workflow again after a crash resumes it.
    """
    wf = _load(workflow)
    if not workdir.is_dir():
        raise _fail_input(ValueError(f"--workdir {workdir}: not a directory"))
    store = _open_journal(db, durability) if journal else None
    config = _config(
        wf,
        max_concurrency,
        workdir,
        max_agents=max_agents,
        max_queued=max_queued,
        spawn_threshold=spawn_threshold,
        idle_timeout_s=idle_timeout_s,
        target_utilisation=target_utilisation,
        scale_up_window_s=scale_up_window_s,
        utilisation_window_s=utilisation_window_s,
    )
    batch = _drive(_execute(wf, config, quiet=quiet, journal=store), store)
    _finish(batch, json_out)


def _drive(
    work: Coroutine[object, object, BatchResult], store: SqliteJournal | None
) -> BatchResult:
    """Run the orchestration; map failures to exit codes; always close the journal.

    Invalid input (a bad graph, an unknown capability, a full queue) exits 2; a run that could
    not finish (its journal broke, the orchestrator failed) exits 1; Ctrl-C exits 130.
    """
    try:
        return asyncio.run(work)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: running attempts were stopped[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (JournalError, RunFailed) as exc:
        err.print(f"[bold red]run failed:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except MetaAgentError as exc:
        raise _fail_input(exc) from None
    finally:
        if store is not None:
            try:
                store.close()
            except JournalError as exc:  # already reported above, or reported now
                err.print(f"[bold red]journal:[/] {exc}", highlight=False)


def _config(
    wf: Workflow,
    max_concurrency: int | None,
    workdir: Path,
    *,
    max_agents: int | None = None,
    max_queued: int | None = None,
    spawn_threshold: int | None = None,
    idle_timeout_s: float | None = None,
    target_utilisation: float | None = None,
    scale_up_window_s: float | None = None,
    utilisation_window_s: float | None = None,
) -> OrchestratorConfig:
    s = wf.settings
    pool, health = PoolPolicy(), HealthPolicy()
    return OrchestratorConfig(
        max_concurrency=max_concurrency or s.max_concurrency or 16,
        max_queued=max_queued or s.max_queued or max(10_000, len(wf.tasks)),
        default_timeout_s=s.default_timeout_s,
        routing=s.routing or "deterministic",
        seed=s.seed or 0,
        workdir=str(workdir.resolve()),
        pool=PoolPolicy(
            max_agents=max_agents or s.max_agents or pool.max_agents,
            spawn_threshold=_pick(spawn_threshold, _pick(s.spawn_threshold, pool.spawn_threshold)),
            idle_timeout_s=_pick(idle_timeout_s, _pick(s.idle_timeout_s, pool.idle_timeout_s)),
            cooldown_s=_pick(s.scale_cooldown_s, pool.cooldown_s),
            target_utilisation=_pick(
                target_utilisation, _pick(s.target_utilisation, pool.target_utilisation)
            ),
            scale_up_window_s=_pick(
                scale_up_window_s, _pick(s.scale_up_window_s, pool.scale_up_window_s)
            ),
            utilisation_window_s=_pick(
                utilisation_window_s, _pick(s.utilisation_window_s, pool.utilisation_window_s)
            ),
        ),
        health=HealthPolicy(
            heartbeat_interval_s=_pick(s.heartbeat_interval_s, health.heartbeat_interval_s),
            heartbeat_timeout_s=_pick(s.heartbeat_timeout_s, health.heartbeat_timeout_s),
            breaker_failures=_pick(s.breaker_failures, health.breaker_failures),
        ),
        capability_limits=dict(s.capability_limits),
        resource_limits=dict(s.resource_limits),
        aging_interval_s=_pick(s.aging_interval_s, 300.0),
    )


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _finish(batch: BatchResult, json_out: Path | None) -> None:
    out.print(summary_table(batch, out.width))
    if len(batch.agents) > 1:
        out.print(agents_table(batch))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(batch.to_json(), indent=2, default=str) + "\n")
        out.print(f"report written to {json_out}")
    raise typer.Exit(EXIT_OK if batch.ok else EXIT_FAILED)


async def _execute(
    wf: Workflow,
    config: OrchestratorConfig,
    *,
    quiet: bool,
    journal: SqliteJournal | None,
    resume: str | None = None,
) -> BatchResult:
    view = ProgressView(len(wf.tasks), wf.agents)
    live_ok = not quiet and err.is_terminal
    key = batch_key(wf.name, wf.tasks, config.workdir)
    async with Orchestrator(wf.agents, config, journal=journal) as orch:

        async def start(on_event: Callable[[Event], None]) -> RunHandle:
            if resume is not None:
                handle = await orch.resume(resume, on_event=on_event)
            else:
                handle = await orch.submit(
                    wf.tasks, name=wf.name, key=key, on_event=on_event, source=wf.source
                )
            states = orch.task_states(handle.run_id)
            finished = {tid: st for tid, st in states.items() if st.terminal}
            if finished and not quiet:
                err.print(
                    f"resuming run {handle.run_id}: {len(finished)} of {len(states)} tasks "
                    "already finished are kept",
                    highlight=False,
                )
            view.state.update({tid: st.value for tid, st in finished.items()})
            return handle

        if live_ok:
            with Live(view.render(0.0), console=err, refresh_per_second=8, transient=True) as live:
                handle = await start(view.on_event)
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                result = asyncio.ensure_future(handle.result())
                while not result.done():
                    view.waiting = orch.waiting()
                    live.update(view.render(loop.time() - t0))
                    await asyncio.wait([result], timeout=0.125)
                return result.result()

        def log(ev: Event) -> None:
            line = view.line(ev)
            if line is not None and not quiet:
                err.print(line, highlight=False, markup=False)

        handle = await start(log)
        return await handle.result()


def _open_journal(db: Path, durability: DurabilityChoice) -> SqliteJournal:
    try:
        return SqliteJournal(db, durability=durability.value)
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        raise _fail_input(ValueError(f"--db {db}: {exc}")) from None


def _stored_journal(db: Path) -> SqliteJournal:
    if not db.exists():
        raise _fail_input(ValueError(f"--db {db}: no journal there (run a workflow first)"))
    return _open_journal(db, DurabilityChoice.normal)


@app.command()
def runs(
    db: DbOption = DEFAULT_PATH,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
) -> None:
    """List journaled runs, newest first."""
    store = _stored_journal(db)
    try:
        infos = store.list_runs(limit)
    finally:
        store.close()
    table = Table(title=f"runs in {db}", title_justify="left")
    for col in ("run", "name", "created", "status", "tasks", "counts"):
        table.add_column(col, overflow="fold")
    for i in infos:
        created = datetime.fromtimestamp(i.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = "finished" if i.finished else "unfinished"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(i.counts.items()))
        table.add_row(i.run_id, i.name, created, status, str(i.tasks), counts or "-")
    out.print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (see `metaagent runs`).")],
    db: DbOption = DEFAULT_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """Show one run: tasks, attempts and decisions (``--json``: the shape of ``run --json``)."""
    store = _stored_journal(db)
    try:
        stored = store.load_run(run_id)
    except KeyError:
        raise _fail_input(ValueError(f"no run {run_id!r} in {db}")) from None
    finally:
        store.close()
    report = stored_report(stored)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return
    table = Table(title=f"{stored.info.name} ({run_id})", title_justify="left")
    for col in ("task", "state", "agent", "attempts", "error"):
        table.add_column(col, overflow="fold")
    for t in report["tasks"]:  # type: ignore[attr-defined]
        table.add_row(
            t["id"], t["state"], t["agent"] or "-", str(len(t["attempts"])), t["error"] or ""
        )
    out.print(table)
    out.print(f"{len(stored.decisions)} decisions; `metaagent show {run_id} --json` for all")


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="Run id (see `metaagent runs`).")],
    db: DbOption = DEFAULT_PATH,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the run report as JSON to this file.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
) -> None:
    """Resume an unfinished run with the agents of the workflow file it came from."""
    store = _stored_journal(db)
    try:
        info = store.load_run(run_id).info
    except KeyError:
        store.close()
        raise _fail_input(ValueError(f"no run {run_id!r} in {db}")) from None
    if info.source is None:
        store.close()
        raise _fail_input(ValueError(f"run {run_id!r} was not started from a workflow file"))
    wf = _load(Path(info.source))
    config = _config(wf, None, Path(info.workdir or "."))
    batch = _drive(_execute(wf, config, quiet=quiet, journal=store, resume=run_id), store)
    _finish(batch, json_out)


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


cli_tools.register(app)


def main() -> None:
    """Entry point of the ``metaagent`` script."""
    if os.environ.get("NO_COLOR") is None and not sys.stdout.isatty():
        os.environ.setdefault("TERM", "dumb")
    app()


if __name__ == "__main__":
    main()
