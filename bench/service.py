"""The service (``metaagent serve``) under load, each figure against a baseline in the same run:

- submit: a 10,000-task workflow in one ``POST /v1/runs``, acknowledged (journaled) - against
  ``Orchestrator.submit`` of the same tasks in-process on a SQLite journal;
- fan-out: the events of a run to 100 WebSocket clients at once: events per second in total
  and the latency of each event (from the server recording it to a client reading it), p50 and
  p99 - against one client. Paced (a run making events at a set rate: the target's 20,000
  events/s in total, whose latency must stay under 100 ms) and as fast as it goes (the
  capacity: there the clients fall behind and latency is queueing);
- idle RSS of the server after start - against a bare Python interpreter.

The server is a real ``metaagent serve`` child process on 127.0.0.1; its agent is a no-op.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._table import print_json, print_table, stamp

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
SUBMIT_TARGET_S = 1.0
RATE_TARGET = 20_000.0  # events per second, all clients together
P99_TARGET_S = 0.100
RSS_TARGET_MB = 150.0
DASHBOARD_TARGET_S = 2.0


def workflow(n: int, pause_s: float | None = None, slots: int = 64) -> dict[str, Any]:
    """``n`` independent tasks on a no-op agent, or (``pause_s``) on one that waits that long,
    with ``slots`` at once: then about ``slots / pause_s`` tasks a second."""
    agent = "noop" if pause_s is None else "pause"
    tasks: list[dict[str, Any]] = [{"id": f"t{i}", "capability": agent} for i in range(n)]
    if pause_s is not None:
        for t in tasks:
            t["input"] = pause_s
    return {
        "name": f"bench-{agent}-{n}",
        "agents": [{
            "name": agent, "capabilities": {agent: 1.0}, "concurrency": slots,
            "runner": {"type": "function", "function": f"bench._service_agent:{agent}"},
        }],
        "tasks": tasks,
    }  # fmt: skip


class Server:
    """``metaagent serve`` in a child process, stopped by its pid."""

    def __init__(self, tmp: Path) -> None:
        env = {**os.environ, "METAAGENT_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "metaagent.cli", "serve", "--port", "0", "--db",
               str(tmp / "journal.db"), "--workdir", str(tmp), "--max-queued", "1000000",
               "--max-concurrency", "256"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        found = threading.Event()
        self.url = ""

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                if "listening on " in line and not self.url:
                    self.url = line.split("listening on ", 1)[1].split()[0]
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        found.wait(60)
        if not self.url:
            self.stop()
            raise RuntimeError("metaagent serve did not start")

    def rss_mb(self) -> float:
        return _rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bare_python_rss_mb() -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, text=True
    )
    time.sleep(0.3)
    try:
        return _rss_mb(proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


async def in_process_submit(n: int, tmp: Path) -> float:
    """Seconds for ``Orchestrator.submit`` of ``n`` tasks on a SQLite journal (journaled)."""
    from bench import _service_agent
    from metaagent import AgentSpec, AgentTask, FunctionRunner, Orchestrator, OrchestratorConfig
    from metaagent.journal.sqlite import SqliteJournal

    tasks = [AgentTask(f"t{i}", "noop") for i in range(n)]
    spec = AgentSpec("noop", {"noop": 1.0}, FunctionRunner(_service_agent.noop), concurrency=64)
    journal = SqliteJournal(tmp / f"inproc-{time.monotonic_ns()}.db")
    config = OrchestratorConfig(max_concurrency=256, max_queued=max(n, 1))
    try:
        async with Orchestrator([spec], config, journal=journal) as orch:
            t0 = time.perf_counter()
            handle = await orch.submit(tasks, name="inproc")
            elapsed = time.perf_counter() - t0
            await handle.result()
    finally:
        journal.close()
    return elapsed


async def fan_out(url: str, doc: dict[str, Any], clients: int) -> dict[str, float]:
    """Connect ``clients`` followers, submit the run ``doc``, read every event to its end."""
    import httpx
    from websockets.asyncio.client import connect

    ws_url = "ws" + url.removeprefix("http") + "/v1/events"
    received = [0] * clients
    latencies: list[float] = []
    first_last: list[float] = []
    done = asyncio.Event()
    run: dict[str, str] = {}
    ready = 0

    async def follow(i: int) -> None:
        nonlocal ready
        async with connect(ws_url, max_size=None, open_timeout=60) as ws:
            await ws.send(json.dumps({"token": TOKEN}))
            await ws.recv()  # hello
            ready += 1
            while True:
                # Read lightly, so that 100 clients in one process keep up: the events are
                # counted, and each is given the latency of the oldest of its frame (the first:
                # frames hold events in seq order), an upper bound.
                raw = await ws.recv()
                now = time.time()
                assert isinstance(raw, str)
                n = raw.count('{"seq":')
                at = raw.find('"ts":') + 5
                oldest = float(raw[at : raw.find("}", at)])
                received[i] += n
                latencies.extend([now - oldest] * n)
                first_last.append(now)
                if '"state":"finished"' in raw and run.get("id", "?") in raw:
                    return

    followers = [asyncio.ensure_future(follow(i)) for i in range(clients)]
    while ready < clients:  # noqa: ASYNC110 (counts the followers' hellos)
        await asyncio.sleep(0.01)
    body = json.dumps({"workflow": doc})
    async with httpx.AsyncClient(timeout=120) as c:
        t0 = time.perf_counter()
        r = await c.post(
            f"{url}/v1/runs", content=body,
            headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        )  # fmt: skip
        ack = time.perf_counter() - t0
    r.raise_for_status()
    run["id"] = r.json()["run_id"]
    start = time.time()
    await asyncio.wait_for(asyncio.gather(*followers), 600)
    done.set()
    span = max(first_last) - start
    total = sum(received)
    latencies.sort()
    return {
        "ack_s": ack,
        "events_per_client": total / clients,
        "events_total": float(total),
        "span_s": span,
        "rate": total / span if span > 0 else float("nan"),
        "p50_s": latencies[len(latencies) // 2],
        "p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def dashboard_render(tasks: int) -> dict[str, object] | None:
    """The dashboard's first render of a ``tasks``-task run (``bench.dashboard.measure``), or
    None when not asked for or Chromium is not installed (said on stderr)."""
    if tasks < 1:
        return None
    try:
        from bench.dashboard import chromium_path, measure
    except ImportError as exc:  # playwright is not installed
        print(f"dashboard render skipped: {exc}", file=sys.stderr)
        return None
    if chromium_path() is None:
        print("dashboard render skipped: chromium is not installed", file=sys.stderr)
        return None
    return measure(tasks, repeats=3)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench service", description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks of the run (10000)")
    parser.add_argument("--clients", type=int, default=100, help="WebSocket clients (100)")
    parser.add_argument("--repeat", type=int, default=3, help="submits timed per side (3)")
    parser.add_argument(
        "--paced-tasks", type=int, default=3_000, help="tasks of the paced run (3000)"
    )
    parser.add_argument(
        "--paced-rate", type=float, default=150.0, help="tasks a second of the paced run (150)"
    )
    parser.add_argument(
        "--dashboard-tasks", type=int, default=5_000,
        help="tasks of the run whose dashboard first render is timed in Chromium (5000; 0: none)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("tasks", "clients", "repeat", "paced_tasks", "paced_rate"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    n: int = args.tasks
    with tempfile.TemporaryDirectory(prefix="bench-service-") as d:
        tmp = Path(d)
        server = Server(tmp)
        try:
            time.sleep(1.0)
            idle_rss = server.rss_mb()
            many = asyncio.run(fan_out(server.url, workflow(n), args.clients))
            one = asyncio.run(fan_out(server.url, workflow(n), 1))
            acks = [many["ack_s"], one["ack_s"]]
            for _ in range(args.repeat - 2):
                acks.append(asyncio.run(fan_out(server.url, workflow(n), 1))["ack_s"])
            slots = 16
            paced_doc = workflow(args.paced_tasks, slots / args.paced_rate, slots)
            paced = asyncio.run(fan_out(server.url, paced_doc, args.clients))
            paced_one = asyncio.run(fan_out(server.url, paced_doc, 1))
            loaded_rss = server.rss_mb()
        finally:
            server.stop()
        inproc = [asyncio.run(in_process_submit(n, tmp)) for _ in range(args.repeat)]
    bare_rss = bare_python_rss_mb()
    dash = dashboard_render(args.dashboard_tasks)
    ack_best, ack_median = min(acks), statistics.median(acks)
    ip_best, ip_median = min(inproc), statistics.median(inproc)
    print(f"The service: a {n:,}-task run submitted in one request, its events to "
          f"{args.clients} WebSocket clients; {len(acks)} submits timed per side")  # fmt: skip
    print_table(
        "Submit acknowledged (journaled)",
        ["path", "best ms", "median ms", "target"],
        [["POST /v1/runs (YAML-free JSON)", 1e3 * ack_best, 1e3 * ack_median, "< 1,000 ms"],
         ["Orchestrator.submit in-process", 1e3 * ip_best, 1e3 * ip_median, "baseline"]],
    )  # fmt: skip
    print_table(
        "Event fan-out over the WebSocket (latency: recorded by the server to read by a client)",
        ["run", "clients", "events/client", "events/s total", "p50 ms", "p99 ms", "target"],
        [[f"paced, {args.paced_rate:g} tasks/s", args.clients, paced["events_per_client"],
          paced["rate"], 1e3 * paced["p50_s"], 1e3 * paced["p99_s"],
          ">= 20,000/s, p99 < 100 ms"],
         [f"paced, {args.paced_rate:g} tasks/s", 1, paced_one["events_per_client"],
          paced_one["rate"], 1e3 * paced_one["p50_s"], 1e3 * paced_one["p99_s"], "baseline"],
         ["as fast as it goes", args.clients, many["events_per_client"], many["rate"],
          1e3 * many["p50_s"], 1e3 * many["p99_s"], "capacity"],
         ["as fast as it goes", 1, one["events_per_client"], one["rate"], 1e3 * one["p50_s"],
          1e3 * one["p99_s"], "baseline"]],
    )  # fmt: skip
    print_table(
        "Resident memory",
        ["process", "RSS MB", "target"],
        [["metaagent serve, idle after start", idle_rss, "< 150 MB"],
         ["metaagent serve, after the runs", loaded_rss, "-"],
         ["bare python", bare_rss, "baseline"]],
    )  # fmt: skip
    if dash is not None:
        print_table(
            "Dashboard first render in Chromium (bench/dashboard.py's measure)",
            ["view", "tasks", "best ms", "median ms", "target"],
            [["live dashboard (serve)", dash["tasks"], dash["dashboard_ms_best"],
              dash["dashboard_ms_median"], "< 2,000 ms"],
             ["HTML report (file)", dash["tasks"], dash["report_ms_best"],
              dash["report_ms_median"], "baseline"]],
        )  # fmt: skip
    result: dict[str, object] = {
        "bench": "service",
        "when": stamp(),
        "tasks": n,
        "clients": args.clients,
        "submit_ms": {"best": 1e3 * ack_best, "median": 1e3 * ack_median},
        "in_process_submit_ms": {"best": 1e3 * ip_best, "median": 1e3 * ip_median},
        "fanout": {"clients": many, "one_client": one},
        "paced": {"rate_tasks_s": args.paced_rate, "clients": paced, "one_client": paced_one},
        "rss_mb": {"idle": idle_rss, "after_runs": loaded_rss, "bare_python": bare_rss},
        "targets": {
            "submit_under_1s": {
                "value_ms": 1e3 * ack_median, "target_met": ack_median < SUBMIT_TARGET_S
            },
            "fanout_rate": {"value": paced["rate"], "target_met": paced["rate"] >= RATE_TARGET},
            "fanout_p99": {
                "value_ms": 1e3 * paced["p99_s"], "target_met": paced["p99_s"] < P99_TARGET_S
            },
            "idle_rss": {"value_mb": idle_rss, "target_met": idle_rss < RSS_TARGET_MB},
        },
    }  # fmt: skip
    if dash is not None:
        result["dashboard"] = dash
        median_ms = float(dash["dashboard_ms_median"])  # type: ignore[arg-type]
        result["targets"]["dashboard_first_render"] = {  # type: ignore[index]
            "value_ms": median_ms, "target_met": median_ms < 1e3 * DASHBOARD_TARGET_S,
        }  # fmt: skip
    print_json(result)
    return result
