"""No-op tasks per second through the whole metaagent path, against bare ``asyncio.gather``.

The metaagent side builds the graph, routes every task, dispatches it to a ``FunctionRunner``
calling an async no-op, records the result and aggregates the batch. The baseline awaits the same
coroutine function over as many items with ``asyncio.gather``. Task lists are built outside the
timed region on both sides; every repetition interleaves all four measurements so they share the
machine's noise. A layered variant (each task depends on two of the layer before) shows what the
dependency graph costs; its baseline gathers one layer after another.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator, OrchestratorConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

TARGET_SHARE = 0.25  # metaagent's rate as a share of gather's
CAPABILITY = "noop"


async def noop(_: object) -> None:
    """The work: none. What is measured is everything around it."""
    return None


def flat_tasks(n: int) -> list[AgentTask]:
    return [AgentTask(f"t{i}", CAPABILITY) for i in range(n)]


def layered_tasks(n: int, layers: int) -> list[list[AgentTask]]:
    """``layers`` layers of ``n // layers`` tasks; each depends on two tasks of the layer above."""
    width = max(1, n // layers)
    out: list[list[AgentTask]] = []
    for k in range(layers):
        row: list[AgentTask] = []
        for i in range(width):
            above = (f"l{k - 1}.{i}", f"l{k - 1}.{(i + 1) % width}")
            deps = tuple(dict.fromkeys(above)) if k else ()  # one parent when the layer is 1 wide
            row.append(AgentTask(f"l{k}.{i}", CAPABILITY, depends_on=deps))
        out.append(row)
    return out


async def time_gather(layers: Sequence[Sequence[AgentTask]]) -> float:
    """Seconds to await the no-op over every item, one ``gather`` per layer."""
    gc.collect()
    t0 = time.perf_counter()
    for layer in layers:
        await asyncio.gather(*[noop(t) for t in layer])
    return time.perf_counter() - t0


async def time_metaagent(tasks: Sequence[AgentTask], agents: int, slots: int) -> float:
    """Seconds for ``execute_batch`` over ``tasks`` on a fresh orchestrator (built untimed)."""
    runner = FunctionRunner(noop)
    specs = [
        AgentSpec(f"noop-{i}", {CAPABILITY: 1.0}, runner, concurrency=slots) for i in range(agents)
    ]
    config = OrchestratorConfig(max_concurrency=agents * slots, max_queued=max(1, len(tasks)))
    async with Orchestrator(specs, config) as orch:
        gc.collect()
        t0 = time.perf_counter()
        batch = await orch.execute_batch(tasks)
        elapsed = time.perf_counter() - t0
    done = batch.counts.get("succeeded", 0)
    if done != len(tasks):
        raise RuntimeError(f"only {done} of {len(tasks)} no-op tasks succeeded: {batch.counts}")
    return elapsed


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench throughput", description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--agents", type=int, default=4, help="no-op agents (default 4)")
    parser.add_argument("--slots", type=int, default=64, help="slots per agent (default 64)")
    parser.add_argument("--layers", type=int, default=10, help="layers of the variant (default 10)")
    args = parser.parse_args(argv)
    for name in ("tasks", "repeat", "agents", "slots", "layers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    n: int = args.tasks
    layers: int = min(args.layers, n)
    width = max(1, n // layers)
    n_layered = width * layers

    times: dict[str, list[float]] = {k: [] for k in ("gather", "meta", "gather_l", "meta_l")}
    for _ in range(args.repeat):
        flat = flat_tasks(n)
        times["gather"].append(asyncio.run(time_gather([flat])))
        flat = flat_tasks(n)
        times["meta"].append(asyncio.run(time_metaagent(flat, args.agents, args.slots)))
        grid = layered_tasks(n, layers)
        times["gather_l"].append(asyncio.run(time_gather(grid)))
        grid = layered_tasks(n, layers)
        tasks = [t for row in grid for t in row]
        times["meta_l"].append(asyncio.run(time_metaagent(tasks, args.agents, args.slots)))

    counts = {"gather": n, "meta": n, "gather_l": n_layered, "meta_l": n_layered}
    best = {k: counts[k] / min(v) for k, v in times.items()}
    median = {k: counts[k] / statistics.median(v) for k, v in times.items()}
    share_best = best["meta"] / best["gather"]
    share_median = median["meta"] / median["gather"]
    share_l_best = best["meta_l"] / best["gather_l"]
    share_l_median = median["meta_l"] / median["gather_l"]
    # Each repetition times both sides back to back, so their ratio shares that moment's noise.
    paired = statistics.median(g / m for g, m in zip(times["gather"], times["meta"], strict=True))
    overhead_us = 1e6 * (1 / best["meta"] - 1 / best["gather"])
    overhead_l_us = 1e6 * (1 / best["meta_l"] - 1 / best["gather_l"])

    print(
        f"Throughput of no-op tasks: {n:,} tasks, {args.repeat} repetitions, "
        f"{args.agents} agents x {args.slots} slots; layered: {layers} layers x {width:,}"
    )
    print_table(
        "Tasks per second (us/task from the best run)",
        ["structure", "path", "best /s", "median /s", "share (best)", "share (median)", "us/task"],
        [
            [
                "flat",
                "asyncio.gather",
                best["gather"],
                median["gather"],
                1.0,
                1.0,
                1e6 / best["gather"],
            ],
            [
                "flat",
                "metaagent",
                best["meta"],
                median["meta"],
                share_best,
                share_median,
                1e6 / best["meta"],
            ],
            [
                "layered",
                "gather per layer",
                best["gather_l"],
                median["gather_l"],
                1.0,
                1.0,
                1e6 / best["gather_l"],
            ],
            [
                "layered",
                "metaagent",
                best["meta_l"],
                median["meta_l"],
                share_l_best,
                share_l_median,
                1e6 / best["meta_l"],
            ],
        ],
    )
    print(
        f"\nmetaagent costs {overhead_us:.1f} us per task over bare gather (best runs) "
        f"({overhead_l_us:.1f} us with the layered graph); target: at least "
        f"{TARGET_SHARE:.0%} of gather's rate, judged best against best (best {share_best:.1%}, "
        f"median {share_median:.1%}, median of paired repetitions {paired:.1%})"
    )

    def r(x: float) -> float:
        return round(x, 1)

    out: dict[str, object] = {
        "bench": "throughput",
        "date": stamp(),
        "tasks": n,
        "repeat": args.repeat,
        "agents": args.agents,
        "slots_per_agent": args.slots,
        "layers": layers,
        "layered_tasks": n_layered,
        "gather_best_per_s": r(best["gather"]),
        "gather_median_per_s": r(median["gather"]),
        "metaagent_best_per_s": r(best["meta"]),
        "metaagent_median_per_s": r(median["meta"]),
        "share_best": round(share_best, 4),
        "share_median": round(share_median, 4),
        "share_paired_median": round(paired, 4),
        "overhead_us_per_task": r(overhead_us),
        "layered_gather_best_per_s": r(best["gather_l"]),
        "layered_gather_median_per_s": r(median["gather_l"]),
        "layered_metaagent_best_per_s": r(best["meta_l"]),
        "layered_metaagent_median_per_s": r(median["meta_l"]),
        "layered_share_best": round(share_l_best, 4),
        "layered_share_median": round(share_l_median, 4),
        "layered_overhead_us_per_task": r(overhead_l_us),
        "graph_cost_pct": round(100.0 * (1 - best["meta_l"] / best["meta"]), 2),
        "targets": {
            "share_of_gather": {
                "target": f">= {TARGET_SHARE:g} of gather's rate (best against best)",
                "value": round(share_best, 4),
                "target_met": share_best >= TARGET_SHARE,
            },
        },
    }
    print_json(out)
    return out
