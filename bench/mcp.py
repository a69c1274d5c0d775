"""What the MCP layer costs: a tool call against the REST call it makes (in process, the
baseline), through the SDK's in-memory client and over stdio (``metaagent mcp`` as a
subprocess); the submission of a large workflow acknowledged; how soon ``wait_run`` returns
after a run ends.

The issue sets no figure here; the targets are this benchmark's own bar: an in-memory tool call
adds under 5 ms (p50) to its REST call, and ``wait_run`` returns within 250 ms (p50) of the
run's end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._table import print_json, print_table, stamp
from metaagent.mcp.api import embedded
from metaagent.mcp.server import MetaagentMCP
from metaagent.workflow.schema import SettingsModel
from metaagent.workflow.settings import Overrides, orchestrator_config

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from mcp import Client

    from metaagent.mcp.api import Api

OVERHEAD_TARGET_MS = 5.0
WAIT_LAG_TARGET_S = 0.25

ONE_TASK = """\
name: bench-one
agents:
  - name: sleeper
    capabilities: {wait: 0.9}
    runner: {type: command, argv: ["python3", "-c", "import time; time.sleep(0.2)"]}
tasks:
  - {id: only, capability: wait}
"""


def wide(tasks: int) -> str:
    """``tasks`` tasks behind one that sleeps (so that acknowledging is all that is measured;
    the run is cancelled after)."""
    lines = [
        "name: bench-wide",
        "agents:",
        "  - name: gatekeeper",
        "    capabilities: {gate: 0.9}",
        '    runner: {type: command, argv: ["python3", "-c", "import time; time.sleep(60)"]}',
        "tasks:",
        "  - {id: gate, capability: gate}",
    ]
    lines += [f"  - {{id: t{i}, capability: gate, depends_on: [gate]}}" for i in range(tasks - 1)]
    return "\n".join(lines) + "\n"


async def _timed(calls: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    await call()  # warm
    out: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _tool(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{name}: {result.content}")
    doc: dict[str, Any] = result.structured_content
    return doc


async def _stdio_calls(tmp: Path, calls: int) -> list[float]:
    from mcp import Client, StdioServerParameters, stdio_client

    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "metaagent.cli", "mcp", "--db", str(tmp / "stdio.db"), "--workdir", str(tmp)],
        cwd=tmp,
    )
    with (tmp / "stdio.err").open("w") as errlog:
        async with Client(stdio_client(server, errlog=errlog)) as client:
            run_id = (await _tool(client, "submit_run", {"workflow_yaml": ONE_TASK}))["run_id"]
            await _tool(client, "wait_run", {"run_id": run_id, "timeout_s": 50})
            return await _timed(calls, lambda: _tool(client, "get_run", {"run_id": run_id}))


async def _wait_lags(api: Api, client: Client, runs: int) -> list[float]:
    lags: list[float] = []
    for _ in range(runs):
        run_id = (await _tool(client, "submit_run", {"workflow_yaml": ONE_TASK}))["run_id"]
        await _tool(client, "wait_run", {"run_id": run_id, "timeout_s": 50})
        returned = time.time()
        rows = (await api.call("GET", "/v1/runs", params={"limit": 5}))["runs"]
        finished = next(r["finished_at"] for r in rows if r["run_id"] == run_id)
        lags.append(max(0.0, returned - float(finished)))
    return lags


async def _submits(api: Api, client: Client, tasks: int, times: int) -> dict[str, float]:
    text = wide(tasks)
    rest: list[float] = []
    mcp: list[float] = []
    for i in range(times):
        order = (("rest", rest), ("mcp", mcp))
        for via, out in order if i % 2 == 0 else order[::-1]:  # neither always goes first
            t0 = time.perf_counter()
            if via == "rest":
                run_id = (await api.call("POST", "/v1/runs", body={"workflow": text}))["run_id"]
            else:
                run_id = (await _tool(client, "submit_run", {"workflow_yaml": text}))["run_id"]
            out.append((time.perf_counter() - t0) * 1000)
            await api.call("POST", f"/v1/runs/{run_id}/cancel")
    return {"rest_ms": statistics.median(rest), "mcp_ms": statistics.median(mcp)}


@dataclass(frozen=True, slots=True)
class Measured:
    rest: list[float]  # ms per get_run, REST in process
    memory: list[float]  # ms per get_run tool call, in-memory client
    stdio: list[float]  # ms per get_run tool call, over stdio
    lags: list[float]  # s from a run's end to wait_run's return
    submits: dict[str, float]  # median ms to acknowledge the big submit, by path


async def _measure(calls: int, tasks: int, waits: int) -> Measured:
    from mcp import Client

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = orchestrator_config(SettingsModel(), Overrides(), workdir=tmp, task_count=0)
        async with embedded(tmp / "journal.db", config) as api:
            server = MetaagentMCP(api)
            async with server.watching(), Client(server.server) as client:
                run_id = (await _tool(client, "submit_run", {"workflow_yaml": ONE_TASK}))["run_id"]
                await _tool(client, "wait_run", {"run_id": run_id, "timeout_s": 50})
                rest = await _timed(calls, lambda: api.call("GET", f"/v1/runs/{run_id}"))
                memory = await _timed(calls, lambda: _tool(client, "get_run", {"run_id": run_id}))
                lags = await _wait_lags(api, client, waits)
                submits = await _submits(api, client, tasks, 4)
        stdio = await _stdio_calls(tmp, calls)
    return Measured(rest, memory, stdio, lags, submits)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench mcp", description=__doc__)
    parser.add_argument("--calls", type=int, default=200, help="get_run calls per path")
    parser.add_argument("--tasks", type=int, default=1_000, help="tasks of the submitted run")
    parser.add_argument("--waits", type=int, default=5, help="runs waited for")
    args = parser.parse_args(argv)
    m = asyncio.run(_measure(args.calls, args.tasks, args.waits))
    rest, memory, stdio, lags, submits = m.rest, m.memory, m.stdio, m.lags, m.submits
    overhead = _p(memory, 0.5) - _p(rest, 0.5)
    lag = statistics.median(lags)
    rows: list[list[object]] = [
        [label, _p(s, 0.5), _p(s, 0.99)]
        for label, s in (("REST in process (baseline)", rest), ("MCP in memory", memory),
                         ("MCP over stdio", stdio))
    ]  # fmt: skip
    print_table(
        f"get_run of a finished run, {args.calls} calls", ["path", "p50 ms", "p99 ms"], rows
    )
    print_table(
        "other figures",
        ["figure", "value", "target", "met"],
        [
            ["MCP in-memory overhead p50 (ms)", overhead, OVERHEAD_TARGET_MS,
             overhead < OVERHEAD_TARGET_MS],
            ["wait_run return after the run's end p50 (s)", lag, WAIT_LAG_TARGET_S,
             lag < WAIT_LAG_TARGET_S],
            [f"submit {args.tasks} tasks, REST in process (ms)", submits["rest_ms"], None, None],
            [f"submit {args.tasks} tasks, MCP submit_run (ms)", submits["mcp_ms"], None, None],
        ],
    )  # fmt: skip
    result: dict[str, object] = {
        "bench": "mcp", "at": stamp(), "calls": args.calls, "tasks": args.tasks,
        "rest_p50_ms": _p(rest, 0.5), "memory_p50_ms": _p(memory, 0.5),
        "memory_p99_ms": _p(memory, 0.99), "stdio_p50_ms": _p(stdio, 0.5),
        "stdio_p99_ms": _p(stdio, 0.99), "overhead_p50_ms": overhead, "wait_lag_p50_s": lag,
        "submit_rest_ms": submits["rest_ms"], "submit_mcp_ms": submits["mcp_ms"],
        "targets": {
            "memory_overhead_p50_ms": {"target": OVERHEAD_TARGET_MS, "value": overhead,
                                       "target_met": overhead < OVERHEAD_TARGET_MS},
            "wait_lag_p50_s": {"target": WAIT_LAG_TARGET_S, "value": lag,
                               "target_met": lag < WAIT_LAG_TARGET_S},
        },
    }  # fmt: skip
    print_json(result)
    return result
