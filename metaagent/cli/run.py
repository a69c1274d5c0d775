"""``metaagent run`` and ``metaagent resume``: drive one orchestration with live progress, then
print the summary. Exit 0 if every task succeeded, 1 if not, 2 for invalid input (or a run another
live process owns), 130 on Ctrl-C.

The run id comes first, on standard error, as does the live progress; the summary goes to
standard output, or to standard error with ``--json -`` (the report is then all of stdout).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live

from metaagent.backends.base import node_of, pending_of
from metaagent.cli import remote
from metaagent.cli.console import ExitCode, err, invalid_input
from metaagent.cli.inputs import (
    DbOption,
    DurabilityChoice,
    DurabilityOption,
    JsonReportOption,
    QuietOption,
    RunIdArgument,
    WorkflowArgument,
    load_workflow_file,
    open_journal,
    stored_journal,
)
from metaagent.cli.progress import ProgressView, agents_table, summary_table
from metaagent.cli.report_file import check_report_path, human_console, write_report
from metaagent.cli.spend import spend_table
from metaagent.errors import MetaAgentError, RunFailed, RunOwned
from metaagent.journal import JournalError
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.runtime.config import OrchestratorConfig
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.runtime.signals import stop_on_signals
from metaagent.workflow.identity import identity_change, workflow_key
from metaagent.workflow.settings import Overrides, orchestrator_config, with_budget

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from metaagent.core.tasks import AgentTask
    from metaagent.journal.sqlite import SqliteJournal
    from metaagent.report.batch import BatchResult
    from metaagent.runtime.events import Event
    from metaagent.runtime.handle import RunHandle
    from metaagent.workflow.build import Workflow


class BackendChoice(StrEnum):
    local = "local"
    ray = "ray"


_DEFAULT = OrchestratorConfig()  # the help texts name its defaults; they are written there once
_POOL = _DEFAULT.pool


KeepWorktreesOption = Annotated[
    bool,
    typer.Option(
        "--keep-worktrees", help="Keep the git worktrees of failed attempts (a workspace's)."
    ),
]


def keep_failed_worktrees(wf: Workflow, keep: bool) -> None:
    """``--keep-worktrees``: the workspace keeps failed attempts' worktrees."""
    if keep and wf.workspace is not None:
        wf.workspace.keep_failed = True


def close_workspace(wf: Workflow) -> None:
    """The run is over: the workspace's spare checkouts go (its kept failures stay)."""
    if wf.workspace is not None:
        wf.workspace.close()


def run_command(
    workflow: WorkflowArgument,
    json_out: JsonReportOption = None,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Tasks running at once.")
    ] = None,
    max_agents: Annotated[
        int | None,
        typer.Option("--max-agents", min=1, help=f"Agent instances at most ({_POOL.max_agents})."),
    ] = None,
    max_queued: Annotated[
        int | None,
        typer.Option(
            "--max-queued",
            min=1,
            help=f"Accepted unfinished tasks at most ({_DEFAULT.max_queued:,}).",
        ),
    ] = None,
    spawn_threshold: Annotated[
        int | None,
        typer.Option(
            "--spawn-threshold",
            min=0,
            help=f"Queue depth that grows the pool ({_POOL.spawn_threshold}).",
        ),
    ] = None,
    idle_timeout_s: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout",
            min=0.001,
            help=f"Idle seconds that stop an instance ({_POOL.idle_timeout_s:g}).",
        ),
    ] = None,
    target_utilisation: Annotated[
        float | None,
        typer.Option(
            "--target-utilisation",
            min=0.0,
            max=1.0,
            help="Retire idle instances while busy slots would fill fewer to this share "
            f"({_POOL.target_utilisation:g}; 0: never).",
        ),
    ] = None,
    scale_up_window_s: Annotated[
        float | None,
        typer.Option(
            "--scale-up-window",
            min=0.0,
            help="Seconds the queue depth is averaged over before it grows the pool "
            f"({_POOL.scale_up_window_s:g}; 0: now).",
        ),
    ] = None,
    utilisation_window_s: Annotated[
        float | None,
        typer.Option(
            "--utilisation-window",
            min=0.0,
            help="Seconds the busy slots are averaged over for the target utilisation "
            f"({_POOL.utilisation_window_s:g}).",
        ),
    ] = None,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Directory the agents work in.")
    ] = Path("."),
    quiet: QuietOption = False,
    db: DbOption = DEFAULT_PATH,
    durability: DurabilityOption = DurabilityChoice.normal,
    journal: Annotated[
        bool, typer.Option("--journal/--no-journal", help="Record the run (to resume it).")
    ] = True,
    backend: Annotated[
        BackendChoice | None,
        typer.Option("--backend", help=f"How agents run ({_DEFAULT.backend}; ray: docs/ray.md)."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Backend ray: auto or the head's HOST:PORT."),
    ] = None,
    keep_worktrees: KeepWorktreesOption = False,
    server: remote.ServerOption = None,
) -> None:
    """Run a workflow: live progress, then a summary table. Exit 0 if every task succeeded.

    The run is journaled; running the same workflow again after a crash resumes it.
    """
    if server:
        check_report_path(json_out)
        return remote.run(server, workflow, json_out, quiet)
    wf = load_workflow_file(workflow)
    keep_failed_worktrees(wf, keep_worktrees)
    if not workdir.is_dir():
        raise invalid_input(f"--workdir {workdir}: not a directory")
    check_report_path(json_out)
    store = open_journal(db, durability) if journal else None
    flags = Overrides(
        max_concurrency=max_concurrency,
        max_queued=max_queued,
        max_agents=max_agents,
        spawn_threshold=spawn_threshold,
        idle_timeout_s=idle_timeout_s,
        target_utilisation=target_utilisation,
        scale_up_window_s=scale_up_window_s,
        utilisation_window_s=utilisation_window_s,
        backend=None if backend is None else backend.value,
        ray_address=ray_address,
    )
    config = orchestrator_config(wf.settings, flags, workdir=workdir, task_count=len(wf.tasks))
    source = str(workflow.resolve())  # absolute: the run resumes from any directory
    carry_out(wf, config, store, json_out, quiet=quiet, source=source)


def resume_command(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_PATH,
    json_out: JsonReportOption = None,
    quiet: QuietOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even if the workflow file changed since.")
    ] = False,
    keep_worktrees: KeepWorktreesOption = False,
) -> None:
    """Resume an unfinished run with the agents of the workflow file it came from.

    Refused (exit 2) when the file changed since the run started, unless ``--force``.
    """
    check_report_path(json_out)
    store = stored_journal(db)
    wf, workdir = reopen_workflow(store, run_id, db, force=force)
    keep_failed_worktrees(wf, keep_worktrees)
    config = orchestrator_config(wf.settings, workdir=workdir, task_count=len(wf.tasks))
    carry_out(wf, config, store, json_out, quiet=quiet, resume=run_id)


def carry_out(
    wf: Workflow,
    config: OrchestratorConfig,
    store: SqliteJournal | None,
    json_out: Path | None,
    *,
    quiet: bool,
    resume: str | None = None,
    source: str | None = None,
) -> None:
    """Run (or resume) the workflow to its end under the journal's retention, close its
    workspace, then print and write the report and exit with the run's code."""
    try:
        batch = drive(
            execute(wf, config, quiet=quiet, journal=store, resume=resume, source=source),
            store,
            retention_days=wf.settings.retention_days,
        )
    finally:
        close_workspace(wf)
    finish(batch, json_out)


def reopen_workflow(
    store: SqliteJournal, run_id: str, db: Path, *, force: bool
) -> tuple[Workflow, Path]:
    """The workflow file run ``run_id`` came from, reloaded, and the run's workdir.

    Exits 2 (closing ``store``) for an unknown run, a run not started from a file, an invalid
    file, or a file whose identity is not the journaled one, unless ``force`` (then warns).
    """
    try:
        try:
            info = store.load_run(run_id, decisions=False, lazy=True).info
        except KeyError:
            raise invalid_input(f"no run {run_id!r} in {db}") from None
        if info.source is None:
            raise invalid_input(f"run {run_id!r} was not started from a workflow file")
        workdir = Path(info.workdir or ".")
        source = Path(info.source)
        if not source.exists() and (workdir / source).exists():  # journaled relative, as before
            source = workdir / source
        wf = load_workflow_file(source)

        def recorded() -> tuple[str, list[AgentTask]]:  # read only to name what changed
            return info.name, store.load_run(run_id, decisions=False).tasks

        changed = identity_change(info.key, wf, str(workdir.resolve()), recorded)
        if changed is not None:
            message = f"the workflow file {source} changed since run {run_id} started ({changed})"
            if not force:
                raise invalid_input(f"{message}; --force uses the file as it is now")
            err.print(f"[bold yellow]warning:[/] {message}; --force: going on", highlight=False)
            store.record_override(run_id, f"resumed with --force: {message}")
    except typer.Exit:
        store.close()
        raise
    return wf, workdir


def drive(
    work: Coroutine[object, object, BatchResult],
    store: SqliteJournal | None,
    *,
    retention_days: float | None = None,
) -> BatchResult:
    """Run the orchestration; map failures to exit codes; always close the journal.

    Invalid input (a bad graph, an unknown capability, a full queue) and a run another live
    process owns exit 2; a run that could not finish (its journal broke, the orchestrator
    failed) exits 1; Ctrl-C exits 130. With ``retention_days`` (the workflow's setting),
    finished runs older than that are deleted from the journal once the run is over.
    """
    try:
        batch = asyncio.run(work)
        if store is not None and retention_days is not None:
            gone = store.delete_finished(retention_days * 86_400)
            if gone.runs:
                err.print(
                    f"retention: deleted {len(gone.runs)} finished runs older than "
                    f"{retention_days:g} days",
                    highlight=False,
                )
        return batch
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: running attempts were stopped[/]")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except RunOwned as exc:  # not touched: the owner goes on with it
        raise invalid_input(exc) from None
    except (JournalError, RunFailed) as exc:
        err.print(f"[bold red]run failed:[/] {exc}", highlight=False)
        raise typer.Exit(ExitCode.FAILED) from None
    except MetaAgentError as exc:
        raise invalid_input(exc) from None
    finally:
        if store is not None:
            try:
                store.close()
            except JournalError as exc:  # already reported above, or reported now
                err.print(f"[bold red]journal:[/] {exc}", highlight=False)


def finish(batch: BatchResult, json_out: Path | None) -> None:
    human = human_console(json_out)
    human.print(summary_table(batch, human.width))
    if len(batch.agents) > 1:
        human.print(agents_table(batch))
    if (spent := spend_table(batch)) is not None:
        human.print(spent)
    if json_out is not None:
        write_report(batch.to_json(), json_out)
    raise typer.Exit(ExitCode.OK if batch.ok else ExitCode.FAILED)


class _RunLine:
    """Prints ``run RUN_ID (journal PATH)`` on stderr once, before anything else of the run.

    Called with the run id of the first event and again once the run has started, so that the
    line comes first even when events arrive before ``submit`` returns.
    """

    def __init__(self, journal: SqliteJournal | None) -> None:
        self.where = "not journaled" if journal is None else f"journal {journal.path}"
        self.printed = False

    def __call__(self, run_id: str) -> None:
        if not self.printed:
            self.printed = True
            err.print(f"run {run_id} ({self.where})", highlight=False, markup=False)


async def execute(
    wf: Workflow,
    config: OrchestratorConfig,
    *,
    quiet: bool,
    journal: SqliteJournal | None,
    resume: str | None = None,
    source: str | None = None,
) -> BatchResult:
    """Run (or resume) the workflow with live progress; the result of the run. ``source`` is
    the workflow file's absolute path, journaled with a new run."""
    view = ProgressView(len(wf.tasks), wf.agents)
    live_ok = not quiet and err.is_terminal
    key = workflow_key(wf, config.workdir)
    announce = _RunLine(journal)
    hint = "metaagent resume {run_id}"
    if journal is not None and journal.path != DEFAULT_PATH:
        hint += f" --db {journal.path}"
    # SIGTERM/SIGINT: attempts stopped and journaled lost, how to resume printed, exit 143/130.
    async with (
        Orchestrator(wf.agents, with_budget(config, wf), journal=journal) as orch,
        stop_on_signals(orch, resume=hint),
    ):

        async def start(on_event: Callable[[Event], None]) -> RunHandle:
            def first(ev: Event) -> None:
                announce(ev.run_id)
                on_event(ev)

            if resume is not None:
                handle = await orch.resume(resume, on_event=first)
            else:
                handle = await orch.submit(
                    wf.tasks, name=wf.name, key=key, on_event=first, source=source
                )
            announce(handle.run_id)
            if orch.reaped is not None and orch.reaped.killed:
                err.print(f"metaagent: {orch.reaped.describe()}", highlight=False, markup=False)
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

        def log(ev: Event) -> None:
            line = view.line(ev)
            if line is not None and not quiet:
                err.print(line, highlight=False, markup=False)

        if live_ok:
            handle = await start(view.on_event)  # its run line comes before the live view
            with Live(view.render(0.0), console=err, refresh_per_second=8, transient=True) as live:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                result = asyncio.ensure_future(handle.result())
                try:
                    while not result.done():
                        view.waiting = {**orch.waiting(), **pending_of(orch.backend)}
                        live.update(view.render(loop.time() - t0))
                        await asyncio.wait([result], timeout=0.125)
                finally:
                    if not result.done():
                        result.cancel()  # stopped by a signal: nobody reads it any more
                batch = result.result()
        else:
            handle = await start(log)
            batch = await handle.result()
        for inst in batch.agents:  # on a cluster backend: where each instance ran
            node = node_of(orch.backend, inst)
            if node is not None:
                batch.nodes[inst] = node
    return batch
