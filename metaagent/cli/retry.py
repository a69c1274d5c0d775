"""``metaagent retry RUN``: run the tasks of a finished run that did not succeed again, keeping
what succeeded. Exit 0 if every task of the new run succeeded, 1 if not, 2 for invalid input
(an unknown or unfinished run, an unknown task id, a changed workflow file without ``--force``).

A recorded terminal state is never overwritten, so a retry is a new run of the same workflow
whose kept tasks are journaled as finished, with their outputs, before it is resumed.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metaagent.cli import remote
from metaagent.cli.console import ExitCode, err, invalid_input
from metaagent.cli.inputs import (
    DbOption,
    JsonReportOption,
    QuietOption,
    RunIdArgument,
    stored_journal,
)
from metaagent.cli.report_file import check_report_path
from metaagent.cli.run import (
    KeepWorktreesOption,
    carry_out,
    keep_failed_worktrees,
    reopen_workflow,
)
from metaagent.errors import WorkflowError
from metaagent.journal import JournalError, KnownRun
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.runtime.journaled import open_retry, retry_plan
from metaagent.workflow.identity import workflow_key
from metaagent.workflow.settings import orchestrator_config

if TYPE_CHECKING:
    from metaagent.journal.sqlite import SqliteJournal
    from metaagent.workflow.build import Workflow


def retry_command(
    run_id: RunIdArgument,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            help="Retry this task and what depends on it (repeatable; default: every task "
            "that did not succeed).",
        ),
    ] = None,
    db: DbOption = DEFAULT_PATH,
    json_out: JsonReportOption = None,
    quiet: QuietOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Retry even if the workflow file changed since.")
    ] = False,
    keep_worktrees: KeepWorktreesOption = False,
    server: remote.ServerOption = None,
) -> None:
    """Run a finished run's failed, cancelled and skipped tasks again in a new run.

    The tasks that succeeded are kept with their outputs; the new run's id comes first.
    """
    check_report_path(json_out)
    if server:
        return remote.retry(server, run_id, json_out, quiet)
    store = stored_journal(db)
    wf, workdir = reopen_workflow(store, run_id, db, force=force)
    keep_failed_worktrees(wf, keep_worktrees)
    config = orchestrator_config(wf.settings, workdir=workdir, task_count=len(wf.tasks))
    new_id = _open_new_run(store, run_id, wf, config.workdir, task or [])
    carry_out(wf, config, store, json_out, quiet=quiet, resume=new_id)


def _open_new_run(
    store: SqliteJournal, run_id: str, wf: Workflow, workdir: str, only: list[str]
) -> str:
    """Journal the retry's run (exit 2, closing ``store``, when it cannot be); its id."""
    new_id = f"run-{uuid.uuid4().hex[:10]}"
    try:
        plan = retry_plan(store.load_run(run_id, decisions=False), wf.tasks, only)
        if not plan.rerun:
            store.close()
            err.print(f"nothing to retry: every task of run {run_id} succeeded", highlight=False)
            raise typer.Exit(ExitCode.OK)
        open_retry(
            store, new_id, wf.name, wf.tasks, plan.kept,
            key=workflow_key(wf, workdir), source=str(Path(wf.source).resolve()), workdir=workdir,
        )  # fmt: skip
    except KnownRun as exc:
        store.close()
        raise invalid_input(
            f"run {exc.run_id} of this workflow has not finished: resume it first"
        ) from None
    except WorkflowError as exc:
        store.close()
        raise invalid_input(exc) from None
    except JournalError as exc:
        store.close()
        err.print(f"[bold red]retry failed:[/] {exc}", highlight=False)
        raise typer.Exit(ExitCode.FAILED) from None
    err.print(
        f"retrying run {run_id} as run {new_id}: {len(plan.rerun)} tasks run again, "
        f"{len(plan.kept)} kept",
        highlight=False,
    )
    return new_id
