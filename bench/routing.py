"""Latency of one routing decision: ``Scheduler.dispatch`` placing one task from a full queue.

Agents are built from 20 capabilities, two or three each, with varied proficiency. Each decision
is timed with ``perf_counter_ns`` around a ``dispatch`` call; each task it routes is finished
(``Outcome.SUCCEEDED``) and replaced by a new one, untimed, so the queue stays at its size. Two
pool states are measured: ``idle`` (every agent free: a decision routes one task) and
``saturated`` (every agent busy but the one just freed: the steady state of a long queue). Every
spec offering the capability is scored, busy ones included (their expected start is when their
running attempt is expected to end), so in the saturated pool a decision may be to *wait* for a
busy agent that would finish the task sooner, and one dispatch may decide for several queued
tasks (up to its look-ahead) before one starts. A decision's latency is its dispatch's time over
the decisions it made (each task routed or left to wait); the p99 of whole dispatch calls is
shown beside it. A dispatch that only waited leaves the freed agent free for the next one
(after three such rounds the oldest attempt ends anyway).
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import time
from typing import TYPE_CHECKING, Literal

from bench._table import print_json, print_table, stamp
from metaagent import AgentSpec, AgentTask, FunctionRunner, Outcome, Scheduler, SchedulerConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.decisions import RouteTask

TARGET_P99_MS = 1.0

CAPABILITIES: tuple[str, ...] = (
    "python_backend", "typescript_frontend", "security_audit", "test_generation",
    "documentation", "query_optimisation", "api_design", "code_review", "refactoring",
    "devops", "database_migration", "ui_design", "accessibility", "data_analysis",
    "ml_training", "infrastructure", "dependency_upgrade", "incident_triage",
    "localisation", "performance_profiling",
)  # fmt: skip

PoolState = Literal["idle", "saturated"]


async def _never_called(_: object) -> None:
    """The scheduler is driven directly here: no agent ever runs."""


def build_agents(n: int, rng: random.Random) -> list[AgentSpec]:
    """``n`` one-slot agents with 2-3 capabilities each; every capability is served."""
    runner = FunctionRunner(_never_called)
    specs: list[AgentSpec] = []
    for i in range(n):
        caps = rng.sample(CAPABILITIES, rng.choice((2, 3)))
        if i < len(CAPABILITIES):
            caps[0] = CAPABILITIES[i]  # the first twenty agents cover every capability
            caps = list(dict.fromkeys(caps))
        profs = {c: round(rng.uniform(0.3, 1.0), 2) for c in caps}
        specs.append(AgentSpec(f"agent-{i:04d}", profs, runner))
    return specs


def make_task(tid: str, caps: Sequence[str], rng: random.Random) -> AgentTask:
    return AgentTask(
        tid,
        rng.choice(caps),
        priority=rng.choice((0, 0, 0, 1, 2)),
        complexity=round(rng.random(), 2),
    )


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def measure_cell(
    n_agents: int, n_queued: int, state: PoolState, decisions: int, warmup: int, seed: int
) -> dict[str, float | int | str]:
    """Time ``decisions`` single-task dispatches with ``n_queued`` tasks waiting."""
    rng = random.Random(seed)
    agents = build_agents(n_agents, rng)
    busy = n_agents if state == "saturated" else 0
    limit = n_agents if state == "saturated" else 1
    sched = Scheduler(
        SchedulerConfig(max_concurrency=limit, max_queued=n_queued + 2 * n_agents + 100)
    )
    now = 0.0
    for spec in agents:
        sched.add_agent(spec, now)
    caps = sched.known_capabilities()  # all twenty unless the pool is smaller than that
    sched.submit("queue", [make_task(f"q{i}", caps, rng) for i in range(n_queued + busy)], now)
    # Saturated: the agents take one task each first (untimed); an agent much worse than a
    # busy one at every capability it offers may be left free (tasks wait for the better one).
    running: list[RouteTask] = sched.dispatch(now) if busy else []
    busy = len(running)
    samples: list[int] = []  # per decision: a dispatch's time over the decisions it made
    per_call: list[int] = []
    counter = time.perf_counter_ns
    gc.collect()
    idle_rounds = 0  # dispatches in a row that chose to wait (the freed agent stays free)
    k = 0
    for i in range(warmup + decisions):
        now += 0.001
        if running and (sched.running == busy or idle_rounds >= 3):
            done = running.pop(0)  # free one agent: the oldest attempt ends
            _finish(sched, done, now)
            idle_rounds = 0
        made = sched.decisions
        t0 = counter()
        routed = sched.dispatch(now)
        t1 = counter()
        made = sched.decisions - made
        if i >= warmup and made:
            per_call.append(t1 - t0)
            samples.extend([(t1 - t0) // made] * made)
        if not routed:
            if state == "idle":
                raise RuntimeError(f"decision {i} routed nothing with every agent free")
            idle_rounds += 1  # it waits for a busy agent that finishes it sooner
        for r in routed:  # keep the queue full
            k += 1
            sched.submit(f"r{k}", [make_task(f"n{k}", caps, rng)], now)
            if state == "saturated":
                running.append(r)
            else:
                now += 0.001
                _finish(sched, r, now)
    waiting = sched.queued - sched.running
    if waiting != n_queued + (n_agents - busy if state == "saturated" else 0):
        raise RuntimeError(f"queue drifted: {waiting} waiting, expected {n_queued}")
    samples.sort()
    per_call.sort()
    return {
        "agents": n_agents,
        "queued": n_queued,
        "pool": state,
        "decisions": decisions,
        "p50_us": round(percentile(samples, 50) / 1000, 2),
        "p90_us": round(percentile(samples, 90) / 1000, 2),
        "p99_us": round(percentile(samples, 99) / 1000, 2),
        "max_us": round(samples[-1] / 1000, 2),
        "mean_us": round(sum(samples) / len(samples) / 1000, 2),
        "dispatch_p99_us": round(percentile(per_call, 99) / 1000, 2),
        "decisions_per_dispatch": round(len(samples) / max(1, len(per_call)), 2),
    }


def _finish(sched: Scheduler, d: RouteTask, now: float) -> None:
    assert d.run_id is not None
    assert d.task_id is not None
    sched.finish(d.run_id, d.task_id, d.attempt, Outcome.SUCCEEDED, now)
    if d.run_id != "queue":
        sched.forget(d.run_id)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench routing", description=__doc__)
    parser.add_argument("--decisions", type=int, default=2000, help="timed per cell (2000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed first decisions (200)")
    parser.add_argument("--agents", type=_int_list, default=[50, 1000], help="e.g. 50,1000")
    parser.add_argument(
        "--queued", type=_int_list, default=[1000, 100_000], help="e.g. 1000,100000"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.decisions < 1 or args.warmup < 0:
        parser.error("--decisions must be at least 1 and --warmup not negative")
    if not args.agents or not args.queued or min(args.agents + args.queued) < 1:
        parser.error("--agents and --queued need positive counts")

    cells: list[dict[str, float | int | str]] = []
    states: tuple[PoolState, ...] = ("idle", "saturated")
    for n_agents in args.agents:
        for n_queued in args.queued:
            for state in states:
                cells.append(
                    measure_cell(n_agents, n_queued, state, args.decisions, args.warmup, args.seed)
                )
    worst = max(float(c["p99_us"]) for c in cells)
    met = worst < TARGET_P99_MS * 1000

    print(
        f"One routing decision (Scheduler.dispatch of one task), {args.decisions:,} timed "
        f"decisions per cell after {args.warmup} warm-up; {len(CAPABILITIES)} capabilities, "
        "2-3 per agent"
    )
    print_table(
        "Latency per decision (microseconds)",
        [
            "agents",
            "queued",
            "pool",
            "p50",
            "p90",
            "p99",
            "max",
            "mean",
            "p99 < 1 ms",
            "per dispatch p99",
            "decisions/dispatch",
        ],
        [
            [
                c["agents"],
                c["queued"],
                c["pool"],
                c["p50_us"],
                c["p90_us"],
                c["p99_us"],
                c["max_us"],
                c["mean_us"],
                float(c["p99_us"]) < TARGET_P99_MS * 1000,
                c["dispatch_p99_us"],
                c["decisions_per_dispatch"],
            ]
            for c in cells
        ],
    )
    print(f"\nworst p99: {worst:.1f} us (target: under {TARGET_P99_MS:g} ms in every cell)")
    out: dict[str, object] = {
        "bench": "routing",
        "date": stamp(),
        "decisions": args.decisions,
        "warmup": args.warmup,
        "agents": args.agents,
        "queued": args.queued,
        "capabilities": len(CAPABILITIES),
        "seed": args.seed,
        "cells": cells,
        "worst_p99_us": worst,
        "targets": {
            "p99_under_1ms": {
                "target": f"p99 < {TARGET_P99_MS:g} ms in every cell",
                "value": worst,
                "target_met": met,
            },
        },
    }
    print_json(out)
    return out
