"""``metaagent runs`` and ``metaagent show``: read journaled runs back, run nothing."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from metaagent.cli import remote
from metaagent.cli.console import invalid_input, out
from metaagent.cli.inputs import DbOption, RunIdArgument, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.report.stored import stored_report

if TYPE_CHECKING:
    from metaagent.journal.base import RunInfo
    from metaagent.journal.sqlite import SqliteJournal

NOT_SUCCEEDED = ("failed", "skipped", "cancelled")
"""The terminal states that make a run failed."""


class RunState(StrEnum):
    """What ``runs --state`` selects, from what the journal holds of a run.

    A run is finished once the journal recorded its end; ``unfinished`` is running now or was
    interrupted (``metaagent resume`` goes on with it). It failed if any task failed, was
    skipped or cancelled (finished or not), and succeeded if it finished and none did.
    """

    unfinished = "unfinished"
    finished = "finished"
    succeeded = "succeeded"
    failed = "failed"


def has_failed(info: RunInfo) -> bool:
    """True if some task of the run failed, was skipped or cancelled."""
    return any(info.counts.get(s, 0) for s in NOT_SUCCEEDED)


def in_state(info: RunInfo, state: RunState) -> bool:
    """True if the run is in ``state``."""
    selected = {
        RunState.unfinished: not info.finished,
        RunState.finished: info.finished,
        RunState.succeeded: info.finished and not has_failed(info),
        RunState.failed: has_failed(info),
    }
    return selected[state]


def run_json(info: RunInfo) -> dict[str, object]:
    """One run as ``runs --json`` lists it (times in seconds since the epoch)."""
    return {**asdict(info), "finished": info.finished, "failed": has_failed(info)}


def runs_command(
    db: DbOption = DEFAULT_PATH,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
    state: Annotated[
        RunState | None, typer.Option("--state", help="Only the runs in this state.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
    server: remote.ServerOption = None,
) -> None:
    """List journaled runs, newest first."""
    if server:
        return remote.runs(server, limit, None if state is None else state.value, as_json)
    store = stored_journal(db)
    try:
        infos = _listed(store, limit, state)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps([run_json(i) for i in infos], indent=2) + "\n")
        return
    ids = [i.run_id for i in infos]
    table = Table(title=f"runs in {db}", title_justify="left")
    # The id is what a user copies: never wrapped nor cut, whatever the width.
    table.add_column("run", no_wrap=True, min_width=max(map(len, ids), default=3))
    for col in ("name", "created", "status", "tasks", "counts"):
        table.add_column(col, overflow="fold")
    for i in infos:
        created = datetime.fromtimestamp(i.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = "finished" if i.finished else "unfinished"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(i.counts.items()))
        table.add_row(i.run_id, i.name, created, status, str(i.tasks), counts or "-")
    # Piped, a row stays one line: nothing to wrap at a width no terminal sets.
    console = out if out.is_terminal else Console(width=100_000, no_color=True)
    console.print(table)


def _listed(store: SqliteJournal, limit: int, state: RunState | None) -> list[RunInfo]:
    """The newest ``limit`` runs in ``state`` (any state when None)."""
    if state is None:
        return store.list_runs(limit)
    asked = limit
    while True:
        infos = store.list_runs(asked)
        found = [i for i in infos if in_state(i, state)]
        if len(found) >= limit or len(infos) < asked:
            return found[:limit]
        asked *= 4


def show_command(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    server: remote.ServerOption = None,
) -> None:
    """Show one run: tasks, attempts and decisions (``--json``: the shape of ``run --json``)."""
    if server:
        return remote.show(server, run_id, as_json)
    store = stored_journal(db)
    try:
        stored = store.load_run(run_id)
    except KeyError:
        raise invalid_input(f"no run {run_id!r} in {db}") from None
    finally:
        store.close()
    report = stored_report(stored)
    report["overrides"] = list(stored.info.overrides)  # what users forced on it (--force)
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
    for what in stored.info.overrides:
        out.print(f"override: {what}", highlight=False, markup=False)
    out.print(f"{len(stored.decisions)} decisions; `metaagent show {run_id} --json` for all")
