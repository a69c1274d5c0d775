"""What durability costs: no-op tasks per second with the SQLite journal, the in-memory journal
and bare ``asyncio.gather``, measured in the same run.

Every task goes through the whole path (route, attempt journaled before launch, result journaled,
group commit once per dispatch turn). The SQLite journal runs in both durability modes:
``normal`` (WAL, ``synchronous=NORMAL``: survives any process crash) and ``full``
(``synchronous=FULL``: an fsync per commit, also survives power loss). Each repetition runs every
variant once, on a fresh journal file, so they share the machine's noise. The target: the SQLite
journal (``normal``) keeps at least half the in-memory journal's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator, OrchestratorConfig
from metaagent.core.tasks import Attempt
from metaagent.journal import Durability, MemoryJournal, SqliteJournal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.journal import Journal

TARGET_SHARE = 0.5  # SQLite (normal) rate as a share of the in-memory journal's rate
CAPABILITY = "noop"
VARIANTS = ("gather", "none", "memory", "sqlite-normal", "sqlite-full")


async def noop(_: object) -> None:
    """The work: none. What is measured is everything around it."""
    return None


def flat_tasks(n: int) -> list[AgentTask]:
    return [AgentTask(f"t{i}", CAPABILITY) for i in range(n)]


async def time_gather(n: int) -> float:
    items = flat_tasks(n)
    gc.collect()
    t0 = time.perf_counter()
    await asyncio.gather(*[noop(t) for t in items])
    return time.perf_counter() - t0


async def time_run(n: int, journal: Journal | None, agents: int, slots: int) -> float:
    """Seconds to run ``n`` no-op tasks to completion (the journal's opening is not timed)."""
    tasks = flat_tasks(n)
    runner = FunctionRunner(noop)
    specs = [
        AgentSpec(f"noop-{i}", {CAPABILITY: 1.0}, runner, concurrency=slots) for i in range(agents)
    ]
    config = OrchestratorConfig(max_concurrency=agents * slots, max_queued=max(1, n))
    async with Orchestrator(specs, config, journal=journal) as orch:
        gc.collect()
        t0 = time.perf_counter()
        handle = await orch.submit(tasks, name="durable")
        batch = await handle.result()
        elapsed = time.perf_counter() - t0
    done = batch.counts.get("succeeded", 0)
    if done != n:
        raise RuntimeError(f"only {done} of {n} no-op tasks succeeded: {batch.counts}")
    return elapsed


def run_sqlite(
    n: int, folder: Path, durability: Durability, agents: int, slots: int
) -> tuple[float, int, int]:
    """Seconds, commits and file bytes for one run on a fresh journal file."""
    path = folder / f"{durability}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    journal = SqliteJournal(path, durability=durability)
    try:
        elapsed = asyncio.run(time_run(n, journal, agents, slots))
        commits = journal.commits
    finally:
        journal.close()
    parts = [Path(f"{path}{suffix}") for suffix in ("", "-wal")]
    size = sum(p.stat().st_size for p in parts if p.exists())
    return elapsed, commits, size


def commit_latency(folder: Path, durability: Durability, commits: int) -> float:
    """Mean seconds per commit when every commit carries one record (no grouping at all)."""
    path = folder / f"latency-{durability}.db"
    journal = SqliteJournal(path, durability=durability)
    try:
        journal.open_run("r", "latency", flat_tasks(commits))
        t0 = time.perf_counter()
        for i in range(commits):
            journal.attempt_started("r", f"t{i}", Attempt(1, "a", "a", 0.0))
            journal.flush()
        return (time.perf_counter() - t0) / commits
    finally:
        journal.close()


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench durable", description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--agents", type=int, default=4, help="no-op agents (default 4)")
    parser.add_argument("--slots", type=int, default=64, help="slots per agent (default 64)")
    parser.add_argument(
        "--commits", type=int, default=200, help="single-record commits timed (default 200)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where journal files go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    for name in ("tasks", "repeat", "agents", "slots", "commits"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    n: int = args.tasks
    folder = Path(tempfile.mkdtemp(prefix="metaagent-durable-", dir=args.dir))

    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    commits: dict[str, int] = {}
    sizes: dict[str, int] = {}
    try:
        for _ in range(args.repeat):
            times["gather"].append(asyncio.run(time_gather(n)))
            times["none"].append(asyncio.run(time_run(n, None, args.agents, args.slots)))
            times["memory"].append(
                asyncio.run(time_run(n, MemoryJournal(), args.agents, args.slots))
            )
            for mode in ("normal", "full"):
                elapsed, c, size = run_sqlite(n, folder, mode, args.agents, args.slots)
                times[f"sqlite-{mode}"].append(elapsed)
                commits[mode], sizes[mode] = c, size
        latency = {mode: commit_latency(folder, mode, args.commits) for mode in ("normal", "full")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    median = {k: n / statistics.median(v) for k, v in times.items()}
    best = {k: n / min(v) for k, v in times.items()}
    share = median["sqlite-normal"] / median["memory"]
    share_full = median["sqlite-full"] / median["memory"]

    print(
        f"Durable throughput: {n:,} no-op tasks, {args.repeat} repetitions, "
        f"{args.agents} agents x {args.slots} slots; journal files in {folder.parent}"
    )
    labels = {
        "gather": "bare asyncio.gather",
        "none": "metaagent, no journal",
        "memory": "metaagent, in-memory journal",
        "sqlite-normal": "metaagent, SQLite (normal)",
        "sqlite-full": "metaagent, SQLite (full)",
    }
    rows: list[list[object]] = []
    for v in VARIANTS:
        mode = v.removeprefix("sqlite-")
        rows.append(
            [
                labels[v],
                best[v],
                median[v],
                median[v] / median["memory"],
                1e6 / median[v],
                n / commits[mode] if mode in commits else None,
                sizes[mode] / n if mode in sizes else None,
            ]
        )
    print_table(
        "Tasks per second",
        ["path", "best /s", "median /s", "share of in-memory", "us/task", "tasks/commit",
         "bytes/task"],
        rows,
    )  # fmt: skip
    print_table(
        "One commit alone (what group commit spreads over many records)",
        ["durability", "ms/commit", "commits/s"],
        [[mode, 1e3 * latency[mode], 1 / latency[mode]] for mode in ("normal", "full")],
    )
    print(
        f"\nSQLite (normal) keeps {share:.1%} of the in-memory journal's rate (target: at least "
        f"{TARGET_SHARE:.0%}); durability=full keeps {share_full:.1%}."
    )

    def r(x: float) -> float:
        return round(x, 1)

    out: dict[str, object] = {
        "bench": "durable",
        "date": stamp(),
        "tasks": n,
        "repeat": args.repeat,
        "agents": args.agents,
        "slots_per_agent": args.slots,
        "gather_median_per_s": r(median["gather"]),
        "no_journal_median_per_s": r(median["none"]),
        "memory_median_per_s": r(median["memory"]),
        "sqlite_normal_median_per_s": r(median["sqlite-normal"]),
        "sqlite_full_median_per_s": r(median["sqlite-full"]),
        "sqlite_normal_best_per_s": r(best["sqlite-normal"]),
        "sqlite_full_best_per_s": r(best["sqlite-full"]),
        "memory_best_per_s": r(best["memory"]),
        "share_of_memory": round(share, 4),
        "full_share_of_memory": round(share_full, 4),
        "full_share_of_normal": round(median["sqlite-full"] / median["sqlite-normal"], 4),
        "commits_normal": commits["normal"],
        "commits_full": commits["full"],
        "tasks_per_commit": round(n / commits["normal"], 1),
        "bytes_per_task": round(sizes["normal"] / n, 1),
        "commit_ms_normal": round(1e3 * latency["normal"], 3),
        "commit_ms_full": round(1e3 * latency["full"], 3),
        "single_commits": args.commits,
        "targets": {
            "sqlite_share_of_memory": {
                "target": f">= {TARGET_SHARE:g} of the in-memory journal's rate (median)",
                "value": round(share, 4),
                "target_met": share >= TARGET_SHARE,
            },
        },
    }
    print_json(out)
    return out
