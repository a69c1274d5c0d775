"""``metaagent mcp`` as a subprocess, through the SDK's stdio client: the contract workflow
submitted, waited for, read (the testing task went to the 0.9 tester) and explained; the run is in
the journal afterwards, as the CLI reads it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)
from mcp import Client, StdioServerParameters, stdio_client
from mcp_helpers import doc, sleeper

from metaagent.mcp.tools import MAX_WAIT_S, TOOL_NAMES

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)


def params(tmp: Path, *args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "metaagent.cli", "mcp", *args],
        cwd=tmp,
        env=env,
    )


async def test_the_contract_workflow_over_stdio(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    server = params(tmp_path, "--db", str(db), "--workdir", str(tmp_path))
    with (tmp_path / "stderr.txt").open("w") as errlog:
        async with Client(stdio_client(server, errlog=errlog)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert tuple(names) == TOOL_NAMES
            answer = doc(await client.call_tool("submit_run", {"workflow_yaml": CONTRACT}))
            run_id = answer["run_id"]
            assert answer["tasks"] == 3
            progress: list[float] = []
            all_done = asyncio.Event()

            async def seen(done: float, total: float | None, message: str | None) -> None:
                progress.append(done)
                if done == total:
                    all_done.set()

            final = doc(
                await client.call_tool(
                    "wait_run",
                    {"run_id": run_id, "timeout_s": MAX_WAIT_S},
                    progress_callback=seen,
                )
            )
            assert final["state"] == "succeeded"
            assert final["counts"] == {"succeeded": 3}
            # Over a real transport the client runs progress callbacks in tasks of their own:
            # the last may trail the result.
            await asyncio.wait_for(all_done.wait(), 10)
            assert progress == sorted(set(progress))
            task = doc(await client.call_tool("get_task", {"run_id": run_id, "task_id": "tests"}))
            assert task["agent"] == "careful-tester"
            assert task["output"] == "tested"
            why = doc(
                await client.call_tool("explain_task", {"run_id": run_id, "task_id": "tests"})
            )
            route = why["decisions"][0]["route"]
            assert route["spec"] == "careful-tester"
            tester = next(c for c in route["candidates"] if c["agent"] == "careful-tester")
            coder = next(c for c in route["candidates"] if c["agent"] == "fast-coder")
            assert tester["breakdown"]["success"] > coder["breakdown"]["success"]
    # The server is gone with its stdin; the run stays in the journal it wrote.
    show = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metaagent.cli", "show", run_id, "--db", str(db), "--json",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(show.communicate(), 60)
    assert show.returncode == 0
    report = json.loads(stdout)
    assert report["run_id"] == run_id
    assert {t["id"]: t["agent"] for t in report["tasks"]}["tests"] == "careful-tester"


def test_a_server_that_does_not_answer_is_said_at_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "mcp", "--server", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--server http://127.0.0.1:9" in done.stderr
    assert done.stdout == ""  # stdout carries only the protocol


async def _running(client: Client, run_id: str) -> None:
    """Until the run's task is under way (bounded by the test's timeout)."""
    while True:
        run = doc(await client.call_tool("get_run", {"run_id": run_id}))
        if run["running"]:
            return
        await asyncio.sleep(0.05)


async def test_sigterm_journals_the_attempt_lost_and_the_next_start_resumes_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "journal.db"
    server = params(tmp_path, "--db", str(db), "--workdir", str(tmp_path))
    with (tmp_path / "stderr.txt").open("w") as errlog:
        async with Client(stdio_client(server, errlog=errlog)) as client:
            run_id = doc(await client.call_tool("submit_run", {"workflow_yaml": sleeper(2)}))[
                "run_id"
            ]
            await _running(client, run_id)
            with sqlite3.connect(db) as conn:
                [(pid,)] = conn.execute("SELECT pid FROM leases WHERE run_id = ?", (run_id,))
            os.kill(pid, signal.SIGTERM)  # the embedded server, which holds the run's lease
            await asyncio.to_thread(_gone, pid)
        async with Client(stdio_client(server, errlog=errlog)) as client:  # resumes the run
            final = doc(await client.call_tool("wait_run", {"run_id": run_id, "timeout_s": 50}))
            assert final["state"] == "succeeded"
            task = doc(await client.call_tool("get_task", {"run_id": run_id, "task_id": "nap"}))
    assert [a["outcome"] for a in task["attempts"]] == ["lost", "succeeded"]
    assert "stopped" in (task["attempts"][0]["error"] or "")


def _gone(pid: int) -> None:
    """Until ``pid`` has exited (a zombie waiting for its parent's wait counts as exited)."""
    while True:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                if f.read().split(") ", 1)[1][:1] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
