"""Failover: agent processes killed with SIGKILL mid-task; how long until the task runs again?

A real ``Orchestrator`` keeps a pool of long-lived agent processes busy
(``examples/pool/jsonl_agent.py`` through ``PersistentCommandRunner``, one slot each). The pool
has spare instances (``--agents`` > ``--concurrency``), as a pool sized for failover would.
Every ``--interval-s`` a random agent that has been running its task for at least 0.1 s is
killed with SIGKILL, ``--kills`` times. Measured per kill:

- **failover**: from the kill to the runtime starting the task's next attempt on another
  instance (the attempt's start, on the orchestrator's clock);
- **agent start**: from the kill to the new agent process starting the work (the wall time the
  agent reports in its output; known when that attempt is the one that finished);
- its parts: detection (kill to the instance declared lost: the exit of its process), the retry
  back-off the scheduler chose, and dispatch (the rest).

Nothing is excluded: a kill can hit a task on its second or third attempt, whose retry back-off is
longer (it doubles per attempt); the table splits the figures by the killed attempt's number.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent import (
    AgentSpec,
    AgentTask,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryTask,
    TaskState,
)
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.core.instances import AgentState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent import RunHandle

TARGET_P99_S = 1.0
AGENT = Path(__file__).resolve().parent.parent / "examples" / "pool" / "jsonl_agent.py"


@dataclass(slots=True)
class Kill:
    instance: str
    pid: int
    run_id: str
    task_id: str
    attempt: int
    at: float  # orchestrator clock
    wall: float  # time.time()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q / 100.0 * len(ordered))) - 1]


async def run(
    args: argparse.Namespace, backlog: bool, n_kills: int
) -> tuple[list[Kill], dict[str, object]]:
    """One scenario: ``backlog`` keeps a queue of waiting tasks, else the pool has room."""
    runner = PersistentCommandRunner([sys.executable, str(AGENT)])
    spec = AgentSpec(
        "worker", {"work": 0.9}, runner, min_instances=args.agents, max_instances=args.agents
    )
    config = OrchestratorConfig(max_concurrency=args.concurrency, max_queued=100_000)
    rng = random.Random(args.seed)
    kills: list[Kill] = []
    handles: list[RunHandle] = []
    t_start = time.perf_counter()
    async with Orchestrator([spec], config) as orch:
        sched = orch.scheduler
        stop = asyncio.Event()

        async def feed() -> None:
            """Keep ``concurrency`` tasks open (and, with a backlog, as many more waiting)."""
            wave = 0
            want = args.concurrency * (2 if backlog else 1)
            while not stop.is_set():
                short = want - sched.queued
                if short > 0:
                    tasks = [
                        AgentTask(f"w{wave}.{i}", "work", input={"seconds": args.task_s},
                                  max_attempts=20)
                        for i in range(short)
                    ]  # fmt: skip
                    handles.append(await orch.submit(tasks, run_id=f"wave{wave}"))
                    wave += 1
                await asyncio.sleep(0.01)

        feeder = asyncio.get_running_loop().create_task(feed())
        while sum(1 for i in sched.agents.values() if i.state is AgentState.READY) < args.agents:  # noqa: ASYNC110 - a load generator polling the pool's state
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # warm-up: every agent has run something
        while len(kills) < n_kills:
            await asyncio.sleep(args.interval_s)
            now = orch.clock.now()
            victims = []
            for run_rec in sched.runs.values():
                if not run_rec.open:
                    continue
                for rec in run_rec.tasks.values():
                    if rec.state is not TaskState.RUNNING or rec.instance is None:
                        continue
                    started = run_rec.started_at + rec.attempts[-1].started_at
                    if now - started >= 0.1:
                        victims.append((rec.instance.id, run_rec.id, rec.task.id, rec.attempt))
            if not victims:
                continue
            iid, rid, tid, attempt = rng.choice(sorted(victims))
            pid = runner.pid(iid)
            if pid is None:
                continue
            os.kill(pid, signal.SIGKILL)
            kills.append(Kill(iid, pid, rid, tid, attempt, orch.clock.now(), time.time()))
        stop.set()
        await feeder
        for h in handles:
            await h.result()
        elapsed = time.perf_counter() - t_start
        states: dict[str, int] = {}
        for h in handles:
            for r in orch.batch_result(h.run_id).results:
                states[r.state.value] = states.get(r.state.value, 0) + 1
        measured = measure(orch, kills, handles)
        measured["states"] = states
        measured["elapsed_s"] = round(elapsed, 2)
        measured["instances_started"] = len(sched.pool.retired) + len(sched.agents)
    return kills, measured


def measure(
    orch: Orchestrator, kills: Sequence[Kill], handles: Sequence[RunHandle]
) -> dict[str, object]:
    sched = orch.scheduler
    retries: dict[tuple[str, str, int], float] = {}
    for h in handles:
        for d in h.decisions:
            if isinstance(d, RetryTask):
                retries[(h.run_id, d.task_id or "", d.next_attempt)] = d.delay_s
    rows: list[dict[str, object]] = []
    for k in kills:
        run = sched.runs[k.run_id]
        rec = run.tasks[k.task_id]
        killed = next(a for a in rec.attempts if a.number == k.attempt)
        if killed.outcome is Outcome.SUCCEEDED:
            # Its answer was in before the kill was seen: nothing to re-route.
            rows.append({"attempt": k.attempt, "finished_first": True})
            continue
        nxt = next((a for a in rec.attempts if a.number == k.attempt + 1), None)
        if nxt is None or killed.finished_at is None:
            rows.append({"attempt": k.attempt, "failover_s": math.inf})
            continue
        detected = run.started_at + killed.finished_at - k.at
        failover = run.started_at + nxt.started_at - k.at
        backoff = retries.get((k.run_id, k.task_id, k.attempt + 1), math.nan)
        agent_start = math.nan
        if nxt.number == rec.attempts[-1].number and isinstance(rec.output, dict):
            agent_start = float(rec.output["started"]) - k.wall
        rows.append(
            {
                "attempt": k.attempt,
                "failover_s": failover,
                "detect_s": detected,
                "backoff_s": backoff,
                "dispatch_s": failover - detected - backoff,
                "agent_start_s": agent_start,
                "other_instance": nxt.agent_instance != k.instance,
            }
        )
    return {"rows": rows}


def summarise(kills: Sequence[Kill], measured: dict[str, object]) -> dict[str, object]:
    rows = measured["rows"]
    assert isinstance(rows, list)

    def col(key: str, subset: Sequence[dict[str, object]] = rows) -> list[float]:
        out = []
        for r in subset:
            v = r.get(key)
            if isinstance(v, float) and not math.isnan(v):
                out.append(v)
        return out

    by_attempt = {}
    for n in sorted({int(str(r["attempt"])) for r in rows}):
        by_attempt[str(n)] = stats(col("failover_s", [r for r in rows if r["attempt"] == n]))
    states = measured["states"]
    assert isinstance(states, dict)
    return {
        "kills": len(kills),
        "failover_s": stats(col("failover_s")),
        "agent_start_s": stats(col("agent_start_s")),
        "detect_s": stats(col("detect_s")),
        "backoff_s": stats(col("backoff_s")),
        "dispatch_s": stats(col("dispatch_s")),
        "failover_by_killed_attempt": by_attempt,
        "rerouted_to_other_instance": sum(1 for r in rows if r.get("other_instance")),
        "kills_after_the_answer": sum(1 for r in rows if r.get("finished_first")),
        "tasks": sum(states.values()),
        "tasks_not_succeeded": sum(n for st, n in states.items() if st != "succeeded"),
        "instances_started": measured["instances_started"],
        "elapsed_s": measured["elapsed_s"],
    }


def stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 4),
        "mean": round(statistics.fmean(values), 4),
    }


def table_rows(name: str, f: dict[str, object]) -> list[list[object]]:
    def line(label: str, key: str) -> list[object]:
        v = f[key]
        assert isinstance(v, dict)
        return [name, label, v.get("n", 0), v.get("p50"), v.get("p99"), v.get("max")]

    out = [
        line("failover: kill to the next attempt started", "failover_s"),
        line("kill to the agent process starting the work", "agent_start_s"),
        line("  detection (process exit seen)", "detect_s"),
        line("  retry back-off chosen", "backoff_s"),
        line("  dispatch (the rest: waiting for a slot)", "dispatch_s"),
    ]
    by = f["failover_by_killed_attempt"]
    assert isinstance(by, dict)
    for n, v in by.items():
        out.append([name, f"failover, task killed on attempt {n}", v.get("n", 0), v.get("p50"),
                    v.get("p99"), v.get("max")])  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench failover", description=__doc__)
    parser.add_argument("--kills", type=int, default=100, help="kills with room (100)")
    parser.add_argument("--backlog-kills", type=int, default=50,
                        help="kills with a backlog of waiting tasks; 0 skips it (50)")  # fmt: skip
    parser.add_argument("--agents", type=int, default=32, help="agent processes (32)")
    parser.add_argument("--concurrency", type=int, default=24, help="tasks at once (24)")
    parser.add_argument("--task-s", type=float, default=0.5, help="task duration (0.5)")
    parser.add_argument("--interval-s", type=float, default=0.25, help="between kills (0.25)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.concurrency > args.agents:
        parser.error("--concurrency must not exceed --agents (the pool needs spare instances)")
    kills, measured = asyncio.run(run(args, False, args.kills))
    room = summarise(kills, measured)
    backlog: dict[str, object] | None = None
    if args.backlog_kills > 0:
        kills_b, measured_b = asyncio.run(run(args, True, args.backlog_kills))
        backlog = summarise(kills_b, measured_b)
    print(
        f"Failover: SIGKILLs of agent processes mid-task; {args.agents} persistent agent "
        f"processes (examples/pool/jsonl_agent.py), {args.concurrency} tasks at once of "
        f"{args.task_s:g}s, a kill every {args.interval_s:g}s on a random agent busy for >= 0.1s. "
        f"Scenario 'room': {args.concurrency} tasks open, so a re-routed task finds a slot; "
        f"'backlog': as many more waiting in the queue. Real orchestrator, real processes."
    )
    rows = table_rows("room", room) + (table_rows("backlog", backlog) if backlog else [])
    print_table(
        "Kill to the task running again (seconds)",
        ["scenario", "measure", "n", "p50", "p99", "max"],
        rows,
    )
    for name, f in (("room", room), ("backlog", backlog)):
        if f is not None:
            print(
                f"{name}: {f['kills']} kills in {f['elapsed_s']}s; re-routed to another "
                f"instance: {f['rerouted_to_other_instance']}/{f['kills']} (the answer was in "
                f"before the kill: {f['kills_after_the_answer']}); tasks not succeeded: "
                f"{f['tasks_not_succeeded']} of {f['tasks']}; agent instances started: "
                f"{f['instances_started']} ({args.agents} + one restart per kill at most)"
            )

    def p99(f: dict[str, object] | None) -> float:
        if f is None:
            return math.nan
        v = f["failover_s"]
        assert isinstance(v, dict)
        return float(v.get("p99", math.inf))

    lost = int(str(room["tasks_not_succeeded"])) + (
        int(str(backlog["tasks_not_succeeded"])) if backlog else 0
    )
    targets: dict[str, object] = {
        "failover_p99": {
            "target": f"< {TARGET_P99_S:g} s, kill to the re-routed attempt starting (room)",
            "value": p99(room),
            "target_met": p99(room) < TARGET_P99_S,
        },
        "no_task_lost": {
            "target": "every task succeeded",
            "value": lost,
            "target_met": lost == 0,
        },
    }
    if backlog is not None:
        targets["failover_p99_backlog"] = {
            "target": f"< {TARGET_P99_S:g} s with a backlog of waiting tasks",
            "value": p99(backlog),
            "target_met": p99(backlog) < TARGET_P99_S,
        }
    out: dict[str, object] = {
        "bench": "failover",
        "date": stamp(),
        "driver": "real Orchestrator, real agent processes (PersistentCommandRunner), SIGKILL",
        "agents": args.agents,
        "concurrency": args.concurrency,
        "task_s": args.task_s,
        "interval_s": args.interval_s,
        "seed": args.seed,
        "room": room,
        "backlog": backlog,
        "targets": targets,
    }
    print_json(out)
    return out
