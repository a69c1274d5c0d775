"""The ``simulate`` and ``explain`` commands: parse, call the library, render.

``register(app)`` adds them to the ``metaagent`` Typer app. Exit code 2 means invalid input.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from metaagent.errors import MetaAgentError
from metaagent.journal.sqlite import DEFAULT_PATH, SqliteJournal
from metaagent.report.explain import explain_task
from metaagent.sim.driver import simulate
from metaagent.sim.loading import load_simulation
from metaagent.sim.search import find_smallest_pool
from metaagent.sim.spec import parse_duration, profiles_from_stats, scale_pools

if TYPE_CHECKING:
    from collections.abc import Iterator

    from metaagent.report.explain import RouteWhy, TaskTrail
    from metaagent.sim.result import SimResult
    from metaagent.sim.search import PoolSearch
    from metaagent.sim.spec import SimSpec

EXIT_INVALID = 2
out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error line stays whole, to be copied


def _invalid(message: object) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(EXIT_INVALID)


def _journal(db: Path) -> SqliteJournal:
    if not db.exists():
        raise _invalid(f"--db {db}: no journal there (run a workflow first)")
    try:
        return SqliteJournal(db)
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        raise _invalid(f"--db {db}: {exc}") from None


# --- simulate ---------------------------------------------------------------------------------


def simulate_command(
    file: Annotated[Path, typer.Argument(help="Simulation YAML file (see docs/simulator.md).")],
    agents: Annotated[
        int | None,
        typer.Option(
            "--agents",
            min=1,
            help="Total agent instances, spread over the file's "
            "agents in proportion to their counts (at least one each).",
        ),
    ] = None,
    tasks: Annotated[
        int | None,
        typer.Option("--tasks", min=1, help="Generate this many tasks (files with `generate:`)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: the file's).")] = None,
    deadline: Annotated[
        str | None,
        typer.Option(
            "--deadline",
            help="Find the smallest pool whose makespan is within this (30s, 5m, 1h30m).",
        ),
    ] = None,
    learned: Annotated[
        bool,
        typer.Option(
            "--learned",
            help="Take durations and failure rates from the statistics "
            "earlier runs learned (in --db) where they exist.",
        ),
    ] = False,
    db: Annotated[Path, typer.Option("--db", help="Journal file, for --learned.")] = DEFAULT_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Run the scheduler on virtual time: makespan, utilisation, queue waits, decisions."""
    try:
        limit = parse_duration(deadline) if deadline is not None else None
    except ValueError as exc:
        raise _invalid(f"--deadline: {exc}") from None
    try:
        spec = load_simulation(file)
    except MetaAgentError as exc:
        raise _invalid(exc) from None
    if agents is not None:
        try:
            spec = spec.with_pools(scale_pools(spec.pools, agents))
        except ValueError as exc:
            raise _invalid(f"--agents: {exc}") from None
    if tasks is not None:
        if spec.workload is None:
            raise _invalid(f"--tasks: {file} lists its tasks; only `generate:` files take --tasks")
        spec = replace(spec, workload=replace(spec.workload, count=tasks))
        problems = spec.workload.problems() if spec.workload is not None else []
        if problems:
            raise _invalid(f"--tasks: {'; '.join(problems)}")
    if seed is not None:
        spec = replace(spec, seed=seed)
    if learned:
        spec = _with_learned(spec, db)
    t0 = time.perf_counter()
    if limit is None:
        with _no_gc():
            result = simulate(spec)
        wall = time.perf_counter() - t0
        if as_json:
            sys.stdout.write(json.dumps({**result.to_json(), "wall_s": round(wall, 3)}) + "\n")
            return
        _render_result(result, wall)
        return
    with _no_gc():
        search = find_smallest_pool(spec, limit)
    wall = time.perf_counter() - t0
    if as_json:
        sys.stdout.write(json.dumps({**search.to_json(), "wall_s": round(wall, 3)}) + "\n")
        raise typer.Exit(0 if search.met else 1)
    _render_search(search, wall)
    if not search.met:
        raise typer.Exit(1)


@contextmanager
def _no_gc() -> Iterator[None]:
    """A simulation allocates millions of objects that all live to its end: cycle collection
    would only rescan them (about a tenth of the run time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _with_learned(spec: SimSpec, db: Path) -> SimSpec:
    store = _journal(db)
    try:
        stats = store.load_stats()
    finally:
        store.close()
    learned = profiles_from_stats(stats)
    if not learned:
        raise _invalid(f"--learned: the journal {db} holds no learned statistics yet")
    return replace(spec, profiles={**spec.profiles, **learned})


def _render_result(r: SimResult, wall_s: float) -> None:
    table = Table(title=f"simulation {r.name} (seed {r.seed})", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    w = r.queue_wait_s
    rows = [
        ("tasks", f"{r.tasks:,}"),
        ("agents (instances / slots)", f"{r.instances} / {r.slots}"),
        ("makespan", _hms(r.makespan_s)),
        ("utilisation", f"{r.utilisation:.1%}"),
        ("queue wait p50 / p95 / p99", f"{_hms(w['p50'])} / {_hms(w['p95'])} / {_hms(w['p99'])}"),
        ("tasks succeeded", f"{r.success_rate:.1%}"),
        ("attempts succeeded", f"{r.attempt_success_rate:.1%}"),
        ("dispatches per task", f"{r.dispatches_per_task:.3f}"),
        ("agent switches per group", f"{r.switches_per_group:.2f} ({r.groups:,} groups)"),
        ("states", ", ".join(f"{n:,} {s}" for s, n in r.states.items())),
        ("simulated in", f"{wall_s:.2f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
    dec = Table(title="decisions", title_justify="left")
    dec.add_column("type")
    dec.add_column("count", justify="right")
    for kind, n in r.decisions.items():
        dec.add_row(kind, f"{n:,}")
    out.print(dec)
    use = Table(title="agents", title_justify="left")
    for col in ("agent", "instances", "slots", "attempts", "utilisation"):
        use.add_column(col, justify="left" if col == "agent" else "right")
    for name, u in sorted(r.by_agent.items(), key=lambda kv: -kv[1].utilisation):
        use.add_row(name, str(u.instances), str(u.slots), f"{u.attempts:,}", f"{u.utilisation:.1%}")
    out.print(use)


def _render_search(s: PoolSearch, wall_s: float) -> None:
    table = Table(title=f"pool sizes tried for a deadline of {_hms(s.deadline_s)}",
                  title_justify="left")  # fmt: skip
    table.add_column("instances", justify="right")
    table.add_column("makespan", justify="right")
    table.add_column("meets it")
    for n, m in s.tried:
        table.add_row(str(n), _hms(m), "yes" if m <= s.deadline_s else "no")
    out.print(table)
    if s.met:
        out.print(f"[green]smallest pool meeting the deadline:[/] {s.instances} instances "
                  f"(makespan {_hms(s.result.makespan_s)})", highlight=False)  # fmt: skip
    else:
        out.print(f"[yellow]no pool tried meets the deadline[/]; the best, {s.instances} "
                  f"instances, takes {_hms(s.result.makespan_s)} (more agents no longer help: "
                  "the dependency chain or failures bound it)", highlight=False)  # fmt: skip
    pools = Table(title="pool", title_justify="left")
    pools.add_column("agent")
    pools.add_column("instances", justify="right")
    for p in s.pools:
        pools.add_row(p.spec.name, str(p.count))
    out.print(pools)
    out.print(f"searched in {wall_s:.2f} s", highlight=False)


def _hms(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# --- explain ----------------------------------------------------------------------------------


def explain_command(
    run_id: Annotated[str, typer.Argument(help="Run id (see `metaagent runs`).")],
    task_id: Annotated[str, typer.Argument(help="Task id within the run.")],
    db: Annotated[Path, typer.Option("--db", help="Journal file (SQLite).")] = DEFAULT_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trail as JSON.")] = False,
) -> None:
    """Why a task went where it went: every decision that touched it, every candidate's score
    breakdown, and why the winner won."""
    store = _journal(db)
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
        shown = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
        raise _invalid(f"run {run_id!r} has no task {task_id!r}; its tasks: {shown}") from None
    if as_json:
        sys.stdout.write(json.dumps(trail.to_json(), indent=2, default=str) + "\n")
        return
    _render_trail(trail)


def _render_trail(t: TaskTrail) -> None:
    head = f"[bold]{t.task_id}[/] ({t.capability}) in run {t.run_id}: {t.state}"
    if t.agent:
        head += f" on {t.agent}"
    out.print(head, highlight=False)
    if t.error:
        out.print(f"error: {t.error}", highlight=False, markup=False)
    if t.weights_note:
        out.print(f"[yellow]note:[/] {t.weights_note}", highlight=False)
    if not t.steps:
        out.print("no decisions touched this task yet")
    for step in t.steps:
        who = f" -> {step.agent}" if step.agent else ""
        out.print(f"\n[bold]{step.at:9.3f}s  {step.type}{who}[/]", highlight=False)
        out.print(f"  {step.reason}", highlight=False, markup=False)
        if step.detail:
            out.print(f"  {step.detail}", highlight=False, markup=False)
        if step.route is not None:
            _render_route(step.route, t.weights)
    if t.attempts:
        table = Table(title="attempts", title_justify="left")
        for col in ("#", "agent", "instance", "started", "finished", "outcome", "error"):
            table.add_column(col, overflow="fold")
        for a in t.attempts:
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
                *(f"{c.breakdown.get(p, 0.0):.2f}" for p in parts),
            )  # fmt: skip
        out.print(table)
    out.print(f"  why: {r.summary}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``simulate`` and ``explain`` to ``app``."""
    app.command("simulate")(simulate_command)
    app.command("explain")(explain_command)
