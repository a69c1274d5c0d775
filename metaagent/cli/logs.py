"""``metaagent logs RUN TASK``: print what one attempt of a journaled task logged, and its error.

The log (a command agent's stderr, capped) is all of standard output, so it can be piped or
saved as it is; which attempt it is, how it ended and its error go to standard error.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from metaagent.cli import remote
from metaagent.cli.console import err, invalid_input
from metaagent.cli.inputs import DbOption, RunIdArgument, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH

if TYPE_CHECKING:
    from metaagent.core.tasks import Attempt
    from metaagent.journal.base import StoredRun


def pick_attempt(stored: StoredRun, task_id: str, number: int | None) -> Attempt:
    """The attempt ``number`` of a task (its last one when None).

    Raises ``LookupError`` with a message for the user when the task, or that attempt, is not
    in the run.
    """
    run_id = stored.info.run_id
    if not any(t.id == task_id for t in stored.tasks):
        raise LookupError(f"run {run_id!r} has no task {task_id!r}")
    seen = stored.attempts.get(task_id, [])
    if not seen:
        raise LookupError(f"task {task_id!r} of run {run_id!r} has not been attempted")
    if number is None:
        return seen[-1]
    for a in seen:
        if a.number == number:
            return a
    numbers = ", ".join(str(a.number) for a in seen)
    raise LookupError(f"task {task_id!r} has no attempt {number} (its attempts: {numbers})")


def describe_attempt(task_id: str, attempt: Attempt) -> str:
    """One line: which attempt, where it ran and how it ended."""
    ended = "still running" if attempt.outcome is None else attempt.outcome.value
    return (
        f"task {task_id} attempt {attempt.number} on {attempt.agent} "
        f"({attempt.agent_instance}): {ended}"
    )


def logs_command(
    run_id: RunIdArgument,
    task_id: Annotated[str, typer.Argument(help="Task id (see `metaagent show RUN`).")],
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=1, help="Attempt number (default: the last one)."),
    ] = None,
    db: DbOption = DEFAULT_PATH,
    server: remote.ServerOption = None,
) -> None:
    """Print the log of a task's attempt (its last one by default), then its error."""
    if server:
        return remote.logs(server, run_id, task_id, attempt)
    store = stored_journal(db)
    try:
        stored = store.load_run(run_id, decisions=False)
    except KeyError:
        raise invalid_input(f"no run {run_id!r} in {db}") from None
    finally:
        store.close()
    try:
        chosen = pick_attempt(stored, task_id, attempt)
    except LookupError as exc:
        raise invalid_input(exc.args[0]) from None
    err.print(describe_attempt(task_id, chosen), highlight=False, markup=False)
    if chosen.log is None:
        err.print("(no log)", highlight=False, markup=False)
    else:
        sys.stdout.write(chosen.log if chosen.log.endswith("\n") else chosen.log + "\n")
        sys.stdout.flush()
    if chosen.error:
        err.print(f"error: {chosen.error}", highlight=False, markup=False)
