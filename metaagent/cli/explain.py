"""``metaagent explain``: why a task went where it went, from the decisions its run journaled.
Exit code 2 means invalid input (no journal, no such run or task)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from metaagent.cli.console import err_unwrapped, invalid_input, out
from metaagent.cli.inputs import DbOption, RunIdArgument, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.report.explain import explain_task

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.report.explain import RouteWhy, Step, TaskTrail

_SHOWN_IDS = 20  # task ids named when the one asked for is not in the run


def _invalid(message: object) -> typer.Exit:
    return invalid_input(message, console=err_unwrapped)


def explain_command(
    run_id: RunIdArgument,
    task_id: Annotated[str, typer.Argument(help="Task id within the run.")],
    db: DbOption = DEFAULT_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trail as JSON.")] = False,
) -> None:
    """Why a task went where it went: every decision that touched it, every candidate's score
    breakdown, and why the winner won."""
    store = stored_journal(db, console=err_unwrapped)
    try:
        stored = store.load_run(run_id)
    except KeyError:
        raise _invalid(f"no run {run_id!r} in {db}") from None
    finally:
        store.close()
    try:
        trail = explain_task(stored, task_id)
    except KeyError:
        ids = [t.id for t in stored.tasks]
        shown = ", ".join(ids[:_SHOWN_IDS]) + (" ..." if len(ids) > _SHOWN_IDS else "")
        raise _invalid(f"run {run_id!r} has no task {task_id!r}; its tasks: {shown}") from None
    if as_json:
        sys.stdout.write(json.dumps(trail.to_json(), indent=2, default=str) + "\n")
        return
    _render_trail(trail)


def _render_trail(t: TaskTrail) -> None:
    _render_head(t)
    if not t.steps:
        out.print("no decisions touched this task yet")
    for step in t.steps:
        _render_step(step, t.weights)
    if t.attempts:
        _render_attempts(t.attempts)


def _render_head(t: TaskTrail) -> None:
    head = f"[bold]{t.task_id}[/] ({t.capability}) in run {t.run_id}: {t.state}"
    if t.agent:
        head += f" on {t.agent}"
    out.print(head, highlight=False)
    if t.error:
        out.print(f"error: {t.error}", highlight=False, markup=False)
    if t.weights_note:
        out.print(f"[yellow]note:[/] {t.weights_note}", highlight=False)


def _render_step(step: Step, weights: dict[str, float]) -> None:
    who = f" -> {step.agent}" if step.agent else ""
    out.print(f"\n[bold]{step.at:9.3f}s  {step.type}{who}[/]", highlight=False)
    out.print(f"  {step.reason}", highlight=False, markup=False)
    if step.detail:
        out.print(f"  {step.detail}", highlight=False, markup=False)
    if step.route is not None:
        _render_route(step.route, weights)


def _render_attempts(attempts: Sequence[Mapping[str, object]]) -> None:
    table = Table(title="attempts", title_justify="left")
    for col in ("#", "agent", "instance", "started", "finished", "outcome", "error"):
        table.add_column(col, overflow="fold")
    for a in attempts:
        fin = a["finished_at"]
        table.add_row(
            str(a["number"]), str(a["agent"]), str(a["instance"]),
            f"{a['started_at']:.3f}s", "-" if fin is None else f"{fin:.3f}s",
            str(a["outcome"] or "-"), str(a["error"] or ""),
        )  # fmt: skip
    out.print(table)


def _render_route(r: RouteWhy, weights: dict[str, float]) -> None:
    if r.candidates:
        parts = list(weights)
        table = Table(box=None, padding=(0, 1), show_edge=False)
        table.add_column("  candidate")
        table.add_column("score", justify="right")
        for p in parts:
            table.add_column(p, justify="right")
        table.add_row("  (weight)", "", *(f"{weights[p]:g}" for p in parts), style="dim")
        for c in r.candidates:
            mark = "* " if c.agent == r.instance else "  "
            table.add_row(
                mark + c.agent, f"{c.score:.3f}",
                *(f"{c.breakdown.get(p, 0.0):.{4 if p == 'cost' else 2}f}" for p in parts),
            )  # fmt: skip
        out.print(table)
    out.print(f"  why: {r.summary}", highlight=False, markup=False)
