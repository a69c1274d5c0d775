"""``metaagent runs`` and ``metaagent show``: read journaled runs back, run nothing."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from metaagent.cli.console import invalid_input, out
from metaagent.cli.inputs import DbOption, RunIdArgument, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.report.stored import stored_report


def runs_command(
    db: DbOption = DEFAULT_PATH,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
) -> None:
    """List journaled runs, newest first."""
    store = stored_journal(db)
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


def show_command(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """Show one run: tasks, attempts and decisions (``--json``: the shape of ``run --json``)."""
    store = stored_journal(db)
    try:
        stored = store.load_run(run_id)
    except KeyError:
        raise invalid_input(f"no run {run_id!r} in {db}") from None
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
