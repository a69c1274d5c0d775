"""A process that executes one small workflow on a SQLite journal, for the lease tests.

``python tests/journal/lease_worker.py --db J --ledger L --round R`` submits the workflow of
round ``R`` (run key ``lease-R``, tasks with idempotency keys), or ``--resume RUN`` resumes a
run. Every task body appends ``{"t": task, "pid": pid}`` to the ledger (``O_APPEND``, one write
per line) before it works for ``--work-ms``. ``--start-at`` (wall-clock seconds) holds the
submission until then, so that two workers race. Exit 0: the run succeeded; 2: ``RunOwned``
(its message on stderr, first line ``owned``); 1: anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from metaagent import AgentSpec, AgentTask, AttemptContext, FunctionRunner, Orchestrator
from metaagent.errors import RunOwned
from metaagent.journal.sqlite import SqliteJournal


def workflow(round_no: int, n: int) -> list[AgentTask]:
    return [AgentTask(f"t{i}", "code", key=f"lease-{round_no}:t{i}") for i in range(n)]


async def run(args: argparse.Namespace) -> int:
    fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()

    async def body(ctx: AttemptContext) -> str:
        os.write(fd, (json.dumps({"t": ctx.task.id, "pid": pid}) + "\n").encode())
        await asyncio.sleep(args.work_ms / 1000.0)
        return ctx.task.id

    agent = AgentSpec("worker", {"code": 0.9}, FunctionRunner(body), concurrency=args.slots)
    journal = SqliteJournal(args.db)
    try:
        async with Orchestrator([agent], journal=journal) as orch:
            delay = args.start_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if args.resume:
                handle = await orch.resume(args.resume)
            else:
                tasks = workflow(args.round, args.tasks)
                handle = await orch.submit(tasks, name="lease", key=f"lease-{args.round}")
            os.write(
                fd,
                (json.dumps({"ev": "running", "pid": pid, "run": handle.run_id}) + "\n").encode(),
            )
            batch = await handle.result()
    except RunOwned as exc:
        print(f"owned\n{exc}", file=sys.stderr)
        return 2
    finally:
        journal.close()
    return 0 if batch.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--resume", default=None)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
