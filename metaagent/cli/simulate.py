"""``metaagent simulate``: run the scheduler on virtual time and print its figures, or search the
smallest pool that meets a deadline (exit 1 if none does). Exit code 2 means invalid input."""

from __future__ import annotations

import gc
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from metaagent.cli.console import ExitCode, err_unwrapped, invalid_input, out
from metaagent.cli.inputs import stored_journal
from metaagent.errors import MetaAgentError
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.sim.driver import simulate
from metaagent.sim.from_workflow import load_any
from metaagent.sim.search import find_smallest_pool
from metaagent.sim.spec import parse_duration, profiles_from_stats, scale_pools

if TYPE_CHECKING:
    from collections.abc import Iterator

    from metaagent.sim.result import SimResult
    from metaagent.sim.search import PoolSearch
    from metaagent.sim.spec import SimSpec


def _invalid(message: object) -> typer.Exit:
    return invalid_input(message, console=err_unwrapped)


def simulate_command(
    file: Annotated[
        Path,
        typer.Argument(help="Simulation YAML file, or a workflow file (see docs/simulator.md)."),
    ],
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
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="Durations and failure rates for a workflow file's agents "
            "(default_profile/profiles, as in a simulation file).",
        ),
    ] = None,
) -> None:
    """Run the scheduler on virtual time: makespan, utilisation, queue waits, decisions."""
    limit_s = _deadline_s(deadline)
    spec = _load(file, profile)
    if agents is not None:
        try:
            spec = spec.with_pools(scale_pools(spec.pools, agents))
        except ValueError as exc:
            raise _invalid(f"--agents: {exc}") from None
    if tasks is not None:
        spec = _with_task_count(spec, tasks, file)
    if seed is not None:
        spec = replace(spec, seed=seed)
    if learned:
        spec = _with_learned(spec, db)
    if limit_s is None:
        _simulate(spec, as_json=as_json)
    else:
        _search(spec, limit_s, as_json=as_json)


def _deadline_s(deadline: str | None) -> float | None:
    try:
        return parse_duration(deadline) if deadline is not None else None
    except ValueError as exc:
        raise _invalid(f"--deadline: {exc}") from None


def _load(file: Path, profile: Path | None) -> SimSpec:
    try:
        return load_any(file, profile_file=profile)
    except MetaAgentError as exc:
        raise _invalid(exc) from None


def _with_task_count(spec: SimSpec, tasks: int, file: Path) -> SimSpec:
    if spec.workload is None:
        raise _invalid(f"--tasks: {file} lists its tasks; only `generate:` files take --tasks")
    workload = replace(spec.workload, count=tasks)
    problems = workload.problems()
    if problems:
        raise _invalid(f"--tasks: {'; '.join(problems)}")
    return replace(spec, workload=workload)


def _with_learned(spec: SimSpec, db: Path) -> SimSpec:
    store = stored_journal(db, console=err_unwrapped)
    try:
        stats = store.load_stats()
    finally:
        store.close()
    learned = profiles_from_stats(stats)
    if not learned:
        raise _invalid(f"--learned: the journal {db} holds no learned statistics yet")
    return replace(spec, profiles={**spec.profiles, **learned})


def _simulate(spec: SimSpec, *, as_json: bool) -> None:
    t0 = time.perf_counter()
    with _no_gc():
        result = simulate(spec)
    wall_s = time.perf_counter() - t0
    if as_json:
        sys.stdout.write(json.dumps({**result.to_json(), "wall_s": round(wall_s, 3)}) + "\n")
        return
    _render_result(result, wall_s)


def _search(spec: SimSpec, limit_s: float, *, as_json: bool) -> None:
    t0 = time.perf_counter()
    with _no_gc():
        search = find_smallest_pool(spec, limit_s)
    wall_s = time.perf_counter() - t0
    if as_json:
        sys.stdout.write(json.dumps({**search.to_json(), "wall_s": round(wall_s, 3)}) + "\n")
    else:
        _render_search(search, wall_s)
    if not search.met:
        raise typer.Exit(ExitCode.FAILED)


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
