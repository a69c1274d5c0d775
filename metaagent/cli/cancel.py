"""``metaagent cancel RUN``: ask the process executing a run to cancel it (or some of its
tasks), from another terminal. Exit 0 once the request is journaled; 2 for an unknown run or
task, or a finished run.

The request is a row of the journal: the run's owner polls for requests twice a second and
cancels through ``Orchestrator.cancel`` (dependents of a cancelled task are skipped). When no
process executes the run, the request waits there and ``metaagent resume`` applies it.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from metaagent.cli import remote
from metaagent.cli.console import invalid_input, out
from metaagent.cli.inputs import DbOption, RunIdArgument, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH


def cancel_command(
    run_id: RunIdArgument,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            help="Cancel this task (repeatable; its dependents are skipped). Default: the run.",
        ),
    ] = None,
    db: DbOption = DEFAULT_PATH,
    server: remote.ServerOption = None,
) -> None:
    """Cancel a run, or some of its tasks, that another process executes."""
    if server:
        return remote.cancel(server, run_id, task)
    store = stored_journal(db)
    try:
        store.request_cancel(run_id, task or None)
        lease = store.lease(run_id)
    except (KeyError, ValueError) as exc:
        raise invalid_input(exc.args[0]) from None
    finally:
        store.close()
    what = f"run {run_id}"
    if task:
        what = f"task{'s' if len(task) > 1 else ''} {', '.join(task)} of {what}"
    if lease is not None and lease.live(time.time()):
        out.print(
            f"cancel of {what} requested; its owner pid {lease.owner.pid} will stop it",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print(
            f"cancel of {what} requested; no process executes it now: "
            f"`metaagent resume {run_id}` will apply it",
            highlight=False,
            soft_wrap=True,
        )
