"""Recovery time: from the start of a new orchestrator process to its first dispatch after a crash.

For each size, a child process runs a layered DAG of no-op tasks on a SQLite journal and kills
itself (SIGKILL at the labelled crash point ``after_result_before_commit``) once half the tasks
(``--finished-share``) have finished, leaving an unfinished run with attempts in flight. Then,
``--repeat`` times, on a fresh copy of that journal, a new process is started that resumes the
run; the time is taken
from just before the process is spawned to the moment the first attempt starts. That covers
the interpreter's start, imports, opening the journal, reading the run back, rebuilding the
graph and queues, the first group commit and the launch. Target: under 1 s for 100,000 tasks.

A resume reads a run back lazily: the tasks that had succeeded (outside decompositions) are
known by id only until the first dispatch turn has started its attempts, and are read back
right after it. The time until the run is whole again is reported too ("run whole").
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import metaagent
from bench._table import print_json, print_table, stamp

if TYPE_CHECKING:
    from collections.abc import Sequence

CHILD = Path(__file__).with_name("_recovery_child.py")
TARGET_S = 1.0  # first dispatch after a crash, for the largest journal
TARGET_TASKS = 100_000
PHASES = (
    ("interpreter + imports", "start", "imported"),
    ("open journal", "imported", "opened"),
    ("read run back", "load_start", "loaded"),
    ("rebuild graph, queues", "loaded", "resumed"),
    ("commit + launch", "resumed", "first_dispatch"),
)


def build(folder: Path, n: int, share: float = 0.5) -> tuple[Path, float]:
    """A journal holding an unfinished run of ``n`` tasks, ``share`` of them finished."""
    db = folder / f"journal-{n}.db"
    done = max(1, int(n * share))
    env = {**os.environ, "METAAGENT_CRASH_AT": f"after_result_before_commit:{done}"}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(CHILD), "build", str(db), str(n)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the build of {n} tasks did not crash as planned: {proc.stderr}")
    return db, time.monotonic() - t0


def contents(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        tasks = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        finished = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        inflight = conn.execute(
            "SELECT COUNT(*) FROM attempts a WHERE finished_at IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM results r WHERE r.run_id = a.run_id AND r.task_id = a.task_id)"
        ).fetchone()[0]
        decisions = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {
        "tasks": tasks, "finished": finished, "in_flight": inflight, "decisions": decisions,
        "bytes": size,
    }  # fmt: skip


def restart(db: Path, scratch: Path) -> dict[str, float]:
    """Seconds from spawning a process on a copy of ``db`` to its first dispatch, by phase."""
    for old in scratch.parent.glob(scratch.name + "*"):
        old.unlink()
    for suffix in ("", "-wal"):  # the file with its WAL: the state at the crash
        part = Path(f"{db}{suffix}")
        if part.exists():
            shutil.copyfile(part, f"{scratch}{suffix}")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(CHILD), "resume", str(scratch)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"the restart failed ({proc.returncode}): {proc.stderr}")
    stamps: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    stamps["start"] = t0
    out = {name: stamps[b] - stamps[a] for name, a, b in PHASES}
    out["total"] = stamps["first_dispatch"] - t0
    out["whole"] = stamps["whole"] - t0
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench recovery", description=__doc__)
    parser.add_argument(
        "--sizes", default="10000,100000", help="tasks per journal, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=5, help="restarts per size (default 5)")
    parser.add_argument(
        "--finished-share",
        type=float,
        default=0.5,
        help="share of the tasks finished at the crash (default 0.5): what a resume can leave "
        "for after its first dispatch",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where journal files go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not sizes or min(sizes) < 10 or args.repeat < 1:
        parser.error("--sizes must be at least 10 each, --repeat at least 1")
    if not 0 < args.finished_share < 1:
        parser.error("--finished-share must be between 0 and 1")

    # A package installed by pip has its bytecode compiled; an editable checkout run with
    # PYTHONDONTWRITEBYTECODE (as on CI machines) would compile every module at each start.
    compiled = compileall.compile_dir(
        str(Path(metaagent.__file__).parent), quiet=1, workers=1
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="metaagent-recovery-", dir=args.dir))
    cells: list[dict[str, object]] = []
    try:
        for n in sizes:
            db, build_s = build(folder, n, args.finished_share)
            held = contents(db)
            runs = [restart(db, folder / "scratch.db") for _ in range(args.repeat)]
            median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            cells.append(
                {
                    "tasks": n,
                    **{f"journal_{k}": v for k, v in held.items()},
                    "build_s": round(build_s, 3),
                    "first_dispatch_median_s": round(median["total"], 4),
                    "first_dispatch_best_s": round(min(r["total"] for r in runs), 4),
                    "first_dispatch_worst_s": round(max(r["total"] for r in runs), 4),
                    "whole_median_s": round(median["whole"], 4),
                    "phases_median_s": {
                        k: round(v, 4) for k, v in median.items() if k not in ("total", "whole")
                    },
                }
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(
        f"Recovery after a crash: time from spawning the orchestrator process to its first "
        f"dispatch; {args.repeat} restarts per journal, each on a fresh copy; "
        f"{args.finished_share:.0%} of the tasks finished at the crash"
    )
    print_table(
        "Journal",
        ["tasks", "finished", "in flight", "decisions", "file MB", "built in s"],
        [
            [c["tasks"], c["journal_finished"], c["journal_in_flight"], c["journal_decisions"],
             int(c["journal_bytes"]) / 1e6, c["build_s"]]  # type: ignore[call-overload]
            for c in cells
        ],
    )  # fmt: skip
    print_table(
        "First dispatch after the crash (seconds)",
        ["tasks", "median", "best", "worst", *(name for name, _, _ in PHASES), "run whole"],
        [
            [c["tasks"], c["first_dispatch_median_s"], c["first_dispatch_best_s"],
             c["first_dispatch_worst_s"],
             *(c["phases_median_s"][name] for name, _, _ in PHASES),  # type: ignore[index]
             c["whole_median_s"]]
            for c in cells
        ],
    )  # fmt: skip
    print(
        "'run whole': until the settled tasks (succeeded before the crash), which a resume "
        "reads back after its first dispatch turn, are in memory too (median)."
    )
    largest = max(cells, key=lambda c: int(c["tasks"]))  # type: ignore[call-overload]
    value = float(largest["first_dispatch_median_s"])  # type: ignore[arg-type]
    applies = int(largest["tasks"]) >= TARGET_TASKS  # type: ignore[call-overload]
    print(
        f"\nTarget: first dispatch under {TARGET_S:g} s with {TARGET_TASKS:,} tasks journaled; "
        f"measured {value:.3f} s (median) with {largest['tasks']:,} tasks"
        + ("" if applies else " (too small to judge the target)")
    )
    out: dict[str, object] = {
        "bench": "recovery",
        "date": stamp(),
        "sizes": sizes,
        "repeat": args.repeat,
        "finished_share": args.finished_share,
        "bytecode_compiled": bool(compiled),
        "cells": cells,
        "targets": {
            "first_dispatch_100k": {
                "target": f"< {TARGET_S:g} s from process start to first dispatch, "
                f"{TARGET_TASKS:,} tasks journaled (median)",
                "value": value,
                "tasks": largest["tasks"],
                "target_met": applies and value < TARGET_S,
            },
        },
    }
    print_json(out)
    return out
