"""A process that runs one task under ``stop_on_signals``, for the signal tests.

``python tests/runtime/signal_worker.py DB PIDFILE`` submits one task to a command agent whose
command starts a grandchild (``sleep 1000``), writes the grandchild's pid to PIDFILE (atomically,
by a rename) and waits for it. The test then sends SIGTERM or SIGINT. Prints ``run RUN_ID`` on
stdout once the run is submitted. With a third argument ``stubborn``, a second task runs on a
function agent that ignores cancellation (so the stop hangs) and touches PIDFILE.stubborn once it
has ignored one: the test's second signal must then force the exit.
"""

from __future__ import annotations

import asyncio
import os
import sys

from metaagent import (
    AgentSpec,
    AgentTask,
    AttemptContext,
    CommandRunner,
    FunctionRunner,
    Orchestrator,
)
from metaagent.journal.sqlite import SqliteJournal
from metaagent.runtime.signals import stop_on_signals

GRANDCHILD = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(['sleep', '1000'])\n"
    "with open(sys.argv[1] + '.tmp', 'w') as fh:\n"
    "    fh.write(str(p.pid))\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "p.wait()\n"
)


async def main(db: str, pidfile: str, stubborn: bool) -> int:
    runner = CommandRunner([sys.executable, "-c", GRANDCHILD, pidfile])

    async def ignore_cancel(ctx: AttemptContext) -> str:
        while True:
            try:
                await asyncio.sleep(1000)
            except asyncio.CancelledError:
                os.close(os.open(pidfile + ".stubborn", os.O_CREAT | os.O_WRONLY, 0o644))

    agents = [AgentSpec("cmd", {"code": 0.9}, runner)]
    tasks = [AgentTask("t", "code")]
    if stubborn:
        agents.append(AgentSpec("fn", {"wait": 0.9}, FunctionRunner(ignore_cancel)))
        tasks.append(AgentTask("s", "wait"))
    journal = SqliteJournal(db)
    try:
        hint = "metaagent resume {run_id} --db " + db
        # The one line `run` needs: the signals' stop closes the orchestrator before its own exit.
        async with (
            Orchestrator(agents, journal=journal) as orch,
            stop_on_signals(orch, resume=hint),
        ):
            handle = await orch.submit(tasks, name="signals")
            print(f"run {handle.run_id}", flush=True)
            batch = await handle.result()
    finally:
        journal.close()
    return 0 if batch.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:] == ["stubborn"])))
