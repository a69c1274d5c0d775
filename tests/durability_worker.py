"""The orchestrator process that the durability tests kill: it runs one random DAG to the end.

``python tests/durability_worker.py --db J --ledger L --seed S --tasks N`` builds the same DAG
from the same seed every time, so a restart after a crash submits the very same workflow (same
run key, same task idempotency keys) and the journal resumes it. Every task body appends one
JSON line ``{"t": task, "a": attempt, "pid": pid, "up": ok}`` to the ledger (``O_APPEND``, one
``write`` per line, so a SIGKILL cannot tear a line) before it does its work; ``up`` says whether
every dependency's output arrived intact. Marker lines ``{"ev": ...}`` tell the test where the
process is: ``start`` (interpreter up), ``open`` (journal opened, recovery begins), ``resumed``
(the run is accepted, dispatch begins) and ``done``. Exit status 0 means every task succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from typing import TYPE_CHECKING

from metaagent import (
    AgentSpec,
    AgentTask,
    AttemptContext,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
)
from metaagent.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CAPABILITIES = ("plan", "code", "test")


def build_dag(seed: int, n: int, *, max_deps: int = 3, window: int = 40) -> list[AgentTask]:
    """``n`` tasks; each depends on up to ``max_deps`` of the ``window`` tasks before it."""
    rng = random.Random(seed)
    tasks: list[AgentTask] = []
    for i in range(n):
        lo = max(0, i - window)
        k = min(i - lo, rng.randint(0, max_deps))
        deps = tuple(f"t{j}" for j in sorted(rng.sample(range(lo, i), k)))
        tasks.append(
            AgentTask(
                f"t{i}",
                CAPABILITIES[i % len(CAPABILITIES)],
                input={"work": rng.random()},
                depends_on=deps,
                key=f"dur-{seed}-{n}:t{i}",
            )
        )
    return tasks


def expected_output(task_id: str) -> str:
    return f"out:{task_id}"


class Ledger:
    """An append-only file of JSON lines, shared by every incarnation of the worker."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pid = os.getpid()

    def write(self, record: dict[str, object]) -> None:
        # One write(2) of a short line on an O_APPEND file: never interleaved, never torn.
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())


def make_body(ledger: Ledger, work_s: float) -> Callable[[AttemptContext], Awaitable[str]]:
    async def body(ctx: AttemptContext) -> str:
        task = ctx.task
        up = set(ctx.upstream) == set(task.depends_on) and all(
            ctx.upstream[d] == expected_output(d) for d in task.depends_on
        )
        ledger.write({"t": task.id, "a": ctx.attempt, "pid": ledger.pid, "up": up})
        work = task.input["work"] if isinstance(task.input, dict) else 0.0
        # Simulated work, so that attempts overlap and a kill finds some in flight.
        await asyncio.sleep(work_s * float(work))
        return expected_output(task.id)

    return body


async def run(args: argparse.Namespace, ledger: Ledger) -> int:
    tasks = build_dag(args.seed, args.tasks)
    runner = FunctionRunner(make_body(ledger, args.work_ms / 1000.0), name="ledger")
    agents = [
        AgentSpec(f"agent-{i}", dict.fromkeys(CAPABILITIES, 0.5 + 0.1 * i), runner, concurrency=4)
        for i in range(4)
    ]
    config = OrchestratorConfig(max_concurrency=args.concurrency, max_queued=args.tasks)
    journal = SqliteJournal(args.db, durability=args.durability)
    ledger.write({"ev": "open", "pid": ledger.pid})
    try:
        async with Orchestrator(agents, config, journal=journal) as orch:
            handle = await orch.submit(
                tasks, name="durability", key=f"dur-{args.seed}-{args.tasks}"
            )
            ledger.write({"ev": "resumed", "pid": ledger.pid, "run": handle.run_id})
            batch = await handle.result()
    finally:
        journal.close()
    ledger.write({"ev": "done", "pid": ledger.pid, "ok": batch.ok})
    return 0 if batch.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--work-ms", type=float, default=10.0, help="longest body, in ms")
    parser.add_argument("--durability", choices=("normal", "full"), default="normal")
    args = parser.parse_args()
    ledger = Ledger(args.ledger)
    ledger.write({"ev": "start", "pid": ledger.pid})
    return asyncio.run(run(args, ledger))


if __name__ == "__main__":
    sys.exit(main())
