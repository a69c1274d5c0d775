"""``metaagent watch``: follow a run that another process executes, from its journal alone.

Exit 0 when the run finishes with every task succeeded, 1 when it finishes otherwise, 2 for no
journal or no such run, 130 on Ctrl-C.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from metaagent.cli import remote
from metaagent.cli.console import ExitCode, invalid_input, out
from metaagent.cli.inputs import DbOption, RunIdArgument, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH

if TYPE_CHECKING:
    from metaagent.journal.base import StoredRun
    from metaagent.journal.sqlite import SqliteJournal

_STATES = ("pending", "running", "succeeded", "failed", "skipped", "cancelled")
_COLOURS = {"succeeded": "green", "failed": "red", "skipped": "yellow", "cancelled": "magenta"}
_LATEST = 8  # finished tasks shown, newest first


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the journal says of a run at one moment. Times are seconds since the run started."""

    run_id: str
    name: str
    total: int
    finished: bool
    counts: dict[str, int]  # every state of ``_STATES``, pending included
    running: list[tuple[str, str]]  # (task, agent instance) of attempts under way
    latest: list[tuple[str, str, float]]  # (task, state, finished at), newest first

    @property
    def done(self) -> int:
        return self.total - self.counts["pending"] - self.counts["running"]

    @property
    def ok(self) -> bool:
        return self.finished and self.counts["succeeded"] == self.total

    def line(self) -> str:
        parts = ", ".join(f"{s} {self.counts[s]}" for s in _STATES if self.counts[s])
        return f"{self.done}/{self.total} done: {parts or 'no tasks'}"


def snapshot(stored: StoredRun) -> Snapshot:
    """The snapshot of a run read back from the journal."""
    results = stored.results
    running = [
        (tid, tries[-1].agent_instance)
        for tid, tries in stored.attempts.items()
        if tid not in results and tries and tries[-1].finished_at is None
    ]
    counts = dict.fromkeys(_STATES, 0)
    for r in results.values():
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    counts["running"] = len(running)
    counts["pending"] = max(0, len(stored.tasks) - len(results) - len(running))
    latest = sorted(
        ((tid, r.state.value, r.finished_at) for tid, r in results.items()),
        key=lambda t: -t[2],
    )
    info = stored.info
    return Snapshot(
        info.run_id, info.name, len(stored.tasks), info.finished, counts, running, latest
    )


def render(s: Snapshot) -> Table:
    """The live view: counts by state, tasks under way, the latest finished."""
    table = Table(title=f"{s.name} ({s.run_id})", title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("detail", overflow="fold")
    counts = Text()
    for state in _STATES:
        counts.append(f"{state} {s.counts[state]}  ", style=_COLOURS.get(state, ""))
    table.add_row(Text(f"{s.done}/{s.total} done", style="bold"), counts)
    table.add_row("running", ", ".join(f"{t}@{a}" for t, a in s.running) or "-")
    for tid, state, at in s.latest[:_LATEST]:
        table.add_row(Text(f"{at:9.2f}s"), Text(f"{tid} {state}", style=_COLOURS.get(state, "")))
    return table


def watch_command(
    run_id: RunIdArgument,
    db: DbOption = DEFAULT_PATH,
    interval_s: Annotated[
        float, typer.Option("--interval", min=0.01, help="Seconds between two reads.")
    ] = 1.0,
    server: remote.ServerOption = None,
) -> None:
    """Follow a run another process executes, from the journal, until it finishes.

    Exit 0 if every task succeeded, 1 if not.
    """
    if server:
        return remote.watch(server, run_id)
    store = stored_journal(db)
    try:
        final = _follow(store, run_id, interval_s, db=db)
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        store.close()
    out.print(f"run {final.run_id} finished: {final.line()}", highlight=False, markup=False)
    raise typer.Exit(ExitCode.OK if final.ok else ExitCode.FAILED)


def _read(store: SqliteJournal, run_id: str, db: object) -> Snapshot:
    try:
        return snapshot(store.load_run(run_id, decisions=False))
    except KeyError:
        raise invalid_input(f"no run {run_id!r} in {db}") from None


def _follow(store: SqliteJournal, run_id: str, interval_s: float, *, db: object) -> Snapshot:
    """Read the run every ``interval_s`` until it is finished; its last snapshot."""
    s = _read(store, run_id, db)
    if out.is_terminal:
        with Live(render(s), console=out, refresh_per_second=8, transient=True) as live:
            while not s.finished:
                time.sleep(interval_s)
                s = _read(store, run_id, db)
                live.update(render(s))
        return s
    seen = {tid for tid, _, _ in s.latest[_LATEST:]}  # a long backlog is not replayed
    last = ""
    while True:
        for tid, state, at in reversed(s.latest):
            if tid not in seen:
                seen.add(tid)
                out.print(f"[{at:7.2f}s] {tid} {state}", highlight=False, markup=False)
        if s.line() != last:
            last = s.line()
            out.print(last, highlight=False, markup=False)
        if s.finished:
            return s
        time.sleep(interval_s)
        s = _read(store, run_id, db)
