"""Worktree overhead: what a workspace adds per coding task on a repository of 10,000 files.

A real git repository of ``--files`` files (in directories of 100) is committed once (and
packed, by the automatic gc that commit starts, before anything is timed). Then
``--tasks`` tasks, in layers of ``--width`` where each task depends on two of the layer above
(so its worktree starts from merged dependency branches), go through what the coding runner
does around the tool: create the task's worktree (and check it is real), commit a one-file
change, merge the branch into the run branch, release the worktree (kept aside as a spare
checkout that the next task reuses; the spares are removed at the end, timed apart). Tasks
of a layer run concurrently, as a run would run them. Target: worktree creation plus merge
under 200 ms per task (mean over every task, the first layer's full checkouts included); the
commit and the release are reported besides, and so is the machine's load average (the
figures are wall times: on a loaded machine they grow with the load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent.workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Sequence

TARGET_MS = 200.0
PHASES = ("create", "commit", "merge", "release")


def make_repo(path: Path, files: int) -> None:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    for i in range(files):
        d = path / f"pkg{i // 100:03d}"
        if i % 100 == 0:
            d.mkdir()
        (d / f"mod{i:05d}.py").write_text(f"VALUE_{i} = {i}\n")
    subprocess.run(["git", "add", "--all"], cwd=path, check=True)
    # The commit's 10,000 new objects start git's automatic gc, which packs them: in the
    # foreground here (a repository that was cloned is packed too), where by default it would
    # run in the background, over the timed tasks.
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@localhost", "-c", "gc.autoDetach=false",
         "commit", "-q", "-m", "init"],
        cwd=path, check=True,
    )  # fmt: skip


def dag(tasks: int, width: int) -> list[tuple[str, list[str]]]:
    """Layers of ``width`` tasks, each depending on two tasks of the layer above."""
    out: list[tuple[str, list[str]]] = []
    for i in range(tasks):
        layer, k = divmod(i, width)
        deps = [] if layer == 0 else sorted({f"t{(layer - 1) * width + (k + j) % width}"
                                             for j in (0, 1)})  # fmt: skip
        out.append((f"t{i}", deps))
    return out


async def one_task(ws: Workspace, task: str, deps: list[str]) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    co = await ws.checkout("bench", task, deps)
    t1 = time.perf_counter()
    (co.path / f"{task}.txt").write_text(f"written by {task}\n")  # the agent's work
    t2 = time.perf_counter()
    head, _ = await ws.commit(co, f"task {task}")
    t3 = time.perf_counter()
    await ws.merge(co, head, f"merge {task}")
    t4 = time.perf_counter()
    await ws.release(co, failed=False)
    t5 = time.perf_counter()
    times.update(create=t1 - t0, commit=t3 - t2, merge=t4 - t3, release=t5 - t4)
    return times


async def run_all(
    ws: Workspace, tasks: list[tuple[str, list[str]]], width: int
) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    for start in range(0, len(tasks), width):
        layer = tasks[start : start + width]
        out.extend(await asyncio.gather(*(one_task(ws, t, d) for t, d in layer)))
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(prog="python -m bench worktrees", description=__doc__)
    p.add_argument("--files", type=int, default=10_000, help="files in the repository")
    p.add_argument("--tasks", type=int, default=20, help="tasks (worktrees) to go through")
    p.add_argument("--width", type=int, default=2, help="tasks per layer, run concurrently")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="metaagent-bench-wt-"))
    try:
        repo = tmp / "repo"
        t0 = time.perf_counter()
        make_repo(repo, args.files)
        setup_s = time.perf_counter() - t0
        ws = Workspace(repo, "main")
        ws.check()
        tasks = dag(args.tasks, args.width)
        start = time.perf_counter()
        per_task = asyncio.run(run_all(ws, tasks, args.width))
        wall = time.perf_counter() - start
        t0 = time.perf_counter()
        ws.close()
        close_s = time.perf_counter() - t0
        merged = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", "metaagent/bench"], cwd=repo,
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    complete = all(f"t{i}.txt" in merged for i in range(args.tasks))
    rows = []
    stats: dict[str, dict[str, float]] = {}
    later = per_task[args.width :] or per_task
    for phase in (*PHASES, "create+merge", "create+merge, reused"):
        if phase.startswith("create+merge"):
            values = [
                1000 * (t["create"] + t["merge"]) for t in (later if "," in phase else per_task)
            ]
        else:
            values = [1000 * t[phase] for t in per_task]
        s = {"mean_ms": statistics.fmean(values), "median_ms": statistics.median(values),
             "max_ms": max(values)}  # fmt: skip
        stats[phase] = s
        rows.append([phase, s["mean_ms"], s["median_ms"], s["max_ms"]])
    print_table(
        f"worktree overhead per task: {args.files:,} files, {args.tasks} tasks, "
        f"{args.width} at a time (repository made in {setup_s:.1f} s)",
        ["phase", "mean ms", "median ms", "max ms"],
        rows,
    )
    value = stats["create+merge"]["mean_ms"]
    load = os.getloadavg()
    print(
        "'create+merge, reused': the tasks after the first layer, whose worktrees are recycled "
        f"checkouts. Load average during the run: {load[0]:.1f} ({os.cpu_count()} CPUs)."
    )
    print(
        f"\nwall time {wall:.2f} s for {args.tasks} tasks, then {close_s:.2f} s to remove the "
        f"spare checkouts; run branch holds every task's "
        f"file: {'yes' if complete else 'NO'}\n"
        f"Target: worktree creation + merge under {TARGET_MS:g} ms per task (mean); "
        f"measured {value:.1f} ms"
    )
    out: dict[str, object] = {
        "bench": "worktrees",
        "date": stamp(),
        "files": args.files,
        "tasks": args.tasks,
        "width": args.width,
        "phases": stats,
        "load_average": load[0],
        "cpus": os.cpu_count(),
        "wall_s": wall,
        "close_s": close_s,
        "run_branch_complete": complete,
        "targets": {
            "create_merge_per_task": {
                "target": f"< {TARGET_MS:g} ms per task (worktree creation + merge, mean), "
                "10,000 files",
                "value": value,
                "files": args.files,
                "target_met": complete and value < TARGET_MS and args.files >= 10_000,
            },
        },
    }
    print_json(out)
    return out
