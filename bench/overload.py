"""Overload: submissions at 10x capacity for 30 s against a bounded queue.

A real ``Orchestrator`` runs function agents (each attempt an ``asyncio.sleep`` of ``--task-s``)
with ``--agents`` x ``--slots`` slots: its capacity is slots / task-s tasks per second. A
submitter offers batches of ``--batch`` tasks ``--factor`` times faster than that for
``--duration-s``; one batch in ten is high priority (10), the rest low (0). The queue is bounded
(``--max-queued``): a batch over the bound is refused with ``CapacityError``. Measured:

- the orchestrator's memory: resident set size sampled every 0.25 s, and its peak (``VmHWM``);
- that nothing accepted is lost: every task of every accepted batch ends ``succeeded``;
- queue waits (ready to first start) of high- and low-priority tasks: priorities must hold.

The baseline is the same offered load without a bound (``--unbounded``, run in a child process
for a shorter time, so its memory does not mix with ours): the queue and the memory grow with the
offered load instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent import (
    AgentSpec,
    AgentTask,
    CapacityError,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent import RunHandle
    from metaagent.agents.base import AttemptContext

TARGET_HIGH_P99_S = 1.0  # high-priority queue wait, p99
HIGH, LOW = 10, 0
ROOT = Path(__file__).resolve().parent.parent


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` figure in kB (VmRSS, VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def _work(ctx: AttemptContext) -> None:
    await asyncio.sleep(float(ctx.task.input))  # type: ignore[arg-type]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q / 100.0 * len(ordered))) - 1]


async def overload(args: argparse.Namespace) -> dict[str, object]:
    runner = FunctionRunner(_work, name="sleep")
    specs = [AgentSpec(f"agent-{i}", {"work": 0.9}, runner, concurrency=args.slots)
             for i in range(args.agents)]  # fmt: skip
    slots = args.agents * args.slots
    bound = 10**9 if args.unbounded else args.max_queued
    config = OrchestratorConfig(max_concurrency=slots, max_queued=bound)
    capacity = slots / args.task_s
    offered_per_s = capacity * args.factor
    period = args.batch / offered_per_s  # seconds between batches
    refused = {HIGH: 0, LOW: 0}
    lost = 0
    waits: dict[int, list[float]] = {HIGH: [], LOW: []}
    accepted_tasks = {HIGH: 0, LOW: 0}
    last_refusal = ""
    offered = {HIGH: 0, LOW: 0}
    rss: list[tuple[float, int, int]] = []  # t, RSS kB, tasks queued
    async with Orchestrator(specs, config) as orch:
        t0 = time.perf_counter()
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                rss.append((time.perf_counter() - t0, status_kb("VmRSS"), orch.scheduler.queued))
                await asyncio.sleep(0.25)

        async def collect(h: RunHandle, prio: int) -> None:
            """Take an accepted batch's result when it ends, then let the orchestrator forget
            it: a long-lived service keeps what it has not yet reported, not its history."""
            nonlocal lost
            batch = await h.result()
            for r in batch.results:
                accepted_tasks[prio] += 1
                if not r.ok:
                    lost += 1
                if r.attempts and r.ready_at is not None:
                    waits[prio].append(r.attempts[0].started_at - r.ready_at)
            orch.forget(h.run_id)
            pending.discard(h)

        loop = asyncio.get_running_loop()
        sampler = loop.create_task(sample())
        collectors: set[asyncio.Task[None]] = set()
        pending: set[RunHandle] = set()
        k = 0
        while True:
            due = t0 + k * period
            now = time.perf_counter()
            if now - t0 >= args.duration_s:
                break
            if due > now:
                await asyncio.sleep(due - now)
            prio = HIGH if k % 10 == 0 else LOW
            tasks = [
                AgentTask(f"t{i}", "work", input=args.task_s, priority=prio)
                for i in range(args.batch)
            ]
            offered[prio] += 1
            try:
                handle = await orch.submit(tasks, run_id=f"b{k}", name=f"b{k}")
            except CapacityError as exc:
                refused[prio] += 1
                last_refusal = str(exc)
            else:
                pending.add(handle)
                task = loop.create_task(collect(handle, prio))
                collectors.add(task)
                task.add_done_callback(collectors.discard)
            k += 1
        submitted_s = time.perf_counter() - t0
        peak_queued = max((q for _, _, q in rss), default=0)
        if args.unbounded:
            # The baseline only shows growth: drop the backlog instead of draining it.
            for h in list(pending):
                if not h.done():
                    await h.cancel()
        await asyncio.gather(*collectors)
        drained_s = time.perf_counter() - t0
        stop.set()
        await sampler
        leftover = orch.scheduler.queued
    t_settle = submitted_s
    during = [r for t, r, _ in rss if t <= t_settle]
    half = [r for t, r, _ in rss if t_settle / 2 <= t <= t_settle]
    first = [r for t, r, _ in rss if t <= t_settle / 2]
    return {
        "bound": None if args.unbounded else bound,
        "capacity_per_s": round(capacity, 1),
        "offered_per_s": round(offered_per_s, 1),
        "submitted_s": round(submitted_s, 2),
        "drained_s": round(drained_s, 2),
        "batches_offered": offered,
        "batches_refused": refused,
        "tasks_accepted": accepted_tasks,
        "tasks_lost": None if args.unbounded else lost,
        "left_open": leftover,
        "peak_queued": peak_queued,
        "rss_start_mb": round(rss[0][1] / 1024, 1) if rss else None,
        "rss_end_of_submissions_mb": round(during[-1] / 1024, 1) if during else None,
        "rss_peak_mb": round(status_kb("VmHWM") / 1024, 1),
        "rss_first_half_max_mb": round(max(first) / 1024, 1) if first else None,
        "rss_second_half_max_mb": round(max(half) / 1024, 1) if half else None,
        "rss_timeline_mb": [[round(t, 1), round(r / 1024, 1), q] for t, r, q in rss[::4]],
        "queue_wait_s": {
            name: {
                "n": len(waits[p]),
                "p50": round(percentile(waits[p], 50), 4),
                "p99": round(percentile(waits[p], 99), 4),
                "max": round(max(waits[p], default=math.nan), 4),
            }
            for name, p in (("high", HIGH), ("low", LOW))
        },
        "last_refusal": last_refusal or None,
    }


def baseline(args: argparse.Namespace) -> dict[str, object] | None:
    """The same load with no bound, in a child process, for ``--baseline-s``."""
    if args.baseline_s <= 0:
        return None
    argv = [
        sys.executable, "-m", "bench", "overload", "--unbounded",
        "--duration-s", str(args.baseline_s), "--agents", str(args.agents),
        "--slots", str(args.slots), "--task-s", str(args.task_s), "--factor", str(args.factor),
        "--batch", str(args.batch), "--baseline-s", "0",
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the unbounded baseline failed: {done.stderr[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    run = data["run"]
    assert isinstance(run, dict)
    return run


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench overload", description=__doc__)
    parser.add_argument("--duration-s", type=float, default=30.0, help="overload time (30)")
    parser.add_argument("--factor", type=float, default=10.0, help="offered / capacity (10)")
    parser.add_argument("--agents", type=int, default=8, help="agents (8)")
    parser.add_argument("--slots", type=int, default=4, help="slots per agent (4)")
    parser.add_argument("--task-s", type=float, default=0.1, help="task duration (0.1)")
    parser.add_argument("--batch", type=int, default=32, help="tasks per submission (32)")
    parser.add_argument("--max-queued", type=int, default=2000, help="the queue bound (2000)")
    parser.add_argument("--baseline-s", type=float, default=5.0,
                        help="seconds of the unbounded baseline; 0 skips it (5)")  # fmt: skip
    parser.add_argument("--unbounded", action="store_true", help="no bound (the baseline)")
    args = parser.parse_args(argv)
    run = asyncio.run(overload(args))
    base = None if args.unbounded else baseline(args)
    waits = run["queue_wait_s"]
    assert isinstance(waits, dict)
    high, low = waits["high"], waits["low"]
    print(
        f"Overload: {run['offered_per_s']:,} tasks/s offered for {args.duration_s:g}s against "
        f"a capacity of {run['capacity_per_s']:,}/s ({args.agents} agents x {args.slots} slots, "
        f"{args.task_s:g}s tasks), batches of {args.batch}, one in ten high priority; queue "
        f"bound {'none' if args.unbounded else args.max_queued}. Real orchestrator, function "
        "agents, one process."
    )
    rows: list[list[object]] = [
        ["bounded" if not args.unbounded else "unbounded", run["submitted_s"],
         run["peak_queued"], run["rss_start_mb"], run["rss_end_of_submissions_mb"],
         run["rss_peak_mb"], run["tasks_lost"]],
    ]  # fmt: skip
    if base is not None:
        rows.append(
            ["unbounded (baseline, child process)", base["submitted_s"], base["peak_queued"],
             base["rss_start_mb"], base["rss_end_of_submissions_mb"], base["rss_peak_mb"], "-"]
        )  # fmt: skip
    print_table(
        "Memory and queue",
        ["queue", "offered for s", "peak queued", "RSS start MB", "RSS end MB", "peak RSS MB",
         "accepted tasks lost"],
        rows,
    )  # fmt: skip
    print_table(
        "Queue wait (ready to first start), seconds",
        ["priority", "tasks", "p50", "p99", "max"],
        [
            [name, w["n"], w["p50"], w["p99"], w["max"]]
            for name, w in (("high", high), ("low", low))
        ],
    )
    offered = run["batches_offered"]
    refused = run["batches_refused"]
    assert isinstance(offered, dict)
    assert isinstance(refused, dict)
    print(
        f"\nbatches refused: high {refused[HIGH]}/{offered[HIGH]}, low {refused[LOW]}/"
        f"{offered[LOW]} (the bound does not look at priority); every refusal was a "
        f"CapacityError, e.g.: {run['last_refusal']}"
    )
    if base is not None:
        print(
            f"baseline without a bound: {base['peak_queued']:,} tasks queued after "
            f"{base['submitted_s']}s and RSS {base['rss_end_of_submissions_mb']} MB, growing "
            "with the offered load."
        )
    lost = run["tasks_lost"]
    high_p99 = float(high["p99"])
    # A first-come-first-served queue at the bound would make a task wait about this long.
    fifo_s = args.max_queued / float(str(run["capacity_per_s"]))
    low_max = float(low["max"])
    print(
        f"a queue served in order would keep a task about {fifo_s:.2f}s at this bound "
        f"(bound / capacity); the longest low-priority wait was {low_max:.2f}s"
    )
    first = run["rss_first_half_max_mb"]
    second = run["rss_second_half_max_mb"]
    bounded = isinstance(first, float) and isinstance(second, float) and second <= first * 1.10
    out: dict[str, object] = {
        "bench": "overload",
        "date": stamp(),
        "driver": "real Orchestrator, async function agents, one process",
        "duration_s": args.duration_s,
        "factor": args.factor,
        "agents": args.agents,
        "slots": args.slots,
        "task_s": args.task_s,
        "batch": args.batch,
        "max_queued": None if args.unbounded else args.max_queued,
        "run": run,
        "baseline_unbounded": base,
        "targets": {
            "memory_bounded": {
                "target": "RSS in the second half of the overload <= 1.1 x the first half's max",
                "value": [first, second],
                "target_met": bool(bounded),
            },
            "no_accepted_task_lost": {
                "target": "every task of every accepted batch succeeded",
                "value": lost,
                "target_met": lost == 0,
            },
            "high_priority_p99_wait": {
                "target": f"< {TARGET_HIGH_P99_S:g} s",
                "value": high_p99,
                "target_met": high_p99 < TARGET_HIGH_P99_S,
            },
            "no_starvation_within_a_priority": {
                "target": f"longest low-priority wait <= 2 x bound / capacity ({2 * fifo_s:.2f} s)",
                "value": low_max,
                "target_met": low_max <= 2 * fifo_s,
            },
        },
    }
    print_json(out)
    return out
