"""Faults: the server killed with SIGKILL mid-run and started again on its journal resumes the
open run; WebSocket clients reconnect with their last seq and miss nothing. And SIGTERM stops
it in order: attempts in flight journaled lost, resumed at the next start."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest
from server_helpers import TOKEN, Server, start_server, wait_for_state, workflow
from ws_clients import Follower, gaps_and_duplicates

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(180)

TASKS = 16


def succeeded(f: Follower, rid: str) -> int:
    return sum(1 for e in f.events if e["run_id"] == rid and e["state"] == "succeeded")


async def follow_through_a_crash(tmp: Path) -> tuple[list[Follower], str, Server]:
    servers = [start_server(tmp)]
    ws = lambda: "ws" + servers[-1].url.removeprefix("http") + "/v1/events"  # noqa: E731
    stop = asyncio.Event()
    followers = [Follower(ws, TOKEN), Follower(ws, TOKEN), Follower(ws, TOKEN)]
    tasks = [asyncio.ensure_future(f.run(stop)) for f in followers]
    with servers[0].client() as c:
        doc = workflow(TASKS, agent="slow", input_=0.25, chain=True, name="crash")
        rid: str = c.post("/v1/runs", json={"workflow": doc}).json()["run_id"]
    followers[2].run_id = rid  # one client follows only this run
    deadline = time.monotonic() + 60
    while succeeded(followers[0], rid) < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    servers[0].stop(signal.SIGKILL)  # no goodbye: not a byte more from it
    before = [f.last_seq for f in followers]
    servers.append(start_server(tmp))
    deadline = time.monotonic() + 90
    while not all(rid in f.finished_runs() for f in followers):
        assert time.monotonic() < deadline, "the resumed run did not finish for every client"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    assert all(f.reconnects >= 1 for f in followers)
    assert all(f.last_seq > b for f, b in zip(followers, before, strict=True))
    return followers, rid, servers[-1]


def test_kill_9_mid_run_then_restart_resumes_and_clients_miss_nothing(tmp_path: Path) -> None:
    followers, rid, server = asyncio.run(follow_through_a_crash(tmp_path))
    try:
        assert "resumed 1 open runs" in server.stderr()
        with server.client() as c:
            report = wait_for_state(c, rid, ["succeeded"])
        assert [t["state"] for t in report["tasks"]] == ["succeeded"] * TASKS
        # Every client got the log as stored, once each, in order.
        full = asyncio.run(read_all(server))
        for f in followers[:2]:
            seqs = [e["seq"] for e in f.events]
            assert gaps_and_duplicates(seqs) == ([], [])
            assert f.events == full[: len(f.events)]
        mine = [e for e in full if e["run_id"] == rid]
        assert followers[2].events == mine[: len(followers[2].events)]
        assert followers[2].events[-1]["state"] == "finished"
        opening = [e["state"] for e in mine if e["type"] == "run"]
        assert opening[:2] == ["submitted", "resumed"]
    finally:
        server.stop()


async def read_all(server: Server) -> list[dict[str, Any]]:
    ws = "ws" + server.url.removeprefix("http") + "/v1/events"
    stop = asyncio.Event()
    f = Follower(lambda: ws, TOKEN)
    task = asyncio.ensure_future(f.run(stop))
    deadline = time.monotonic() + 30
    while not f.heads or f.last_seq < f.heads[0]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return f.events


def test_sigterm_journals_attempts_lost_and_the_next_start_resumes(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    with server.client() as c:
        doc = workflow(2, agent="slow", input_=1.5, name="term")
        rid = c.post("/v1/runs", json={"workflow": doc}).json()["run_id"]
        deadline = time.monotonic() + 30
        while c.get(f"/v1/runs/{rid}/tasks/t0").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    code = server.stop(signal.SIGTERM)
    assert code in (-signal.SIGTERM, 128 + signal.SIGTERM, 0), code
    assert "2 attempts in flight recorded as lost" in server.stderr()
    again = start_server(tmp_path)
    try:
        with again.client() as c:
            report = wait_for_state(c, rid, ["succeeded"])
        outcomes = [a["outcome"] for a in report["tasks"][0]["attempts"]]
        assert outcomes == ["lost", "succeeded"]
    finally:
        again.stop()


def test_a_run_the_cli_left_open_is_resumed_by_the_server(tmp_path: Path) -> None:
    import os
    import sqlite3
    import subprocess
    import sys

    import yaml
    from server_helpers import HERE

    doc = workflow(3, agent="slow", input_=0.5, chain=True, name="from-cli")
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    cli = subprocess.Popen(
        [sys.executable, "-m", "metaagent.cli", "run", "wf.yaml", "--db", "journal.db", "-q"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:  # until its first attempt is journaled
        assert time.monotonic() < deadline
        time.sleep(0.05)
        if not (tmp_path / "journal.db").exists():
            continue
        conn = sqlite3.connect(tmp_path / "journal.db")
        try:
            started = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
        except sqlite3.OperationalError:
            started = 0
        finally:
            conn.close()
        if started:
            break
    cli.kill()
    cli.wait(30)
    server = start_server(tmp_path)
    try:
        assert "resumed 1 open runs" in server.stderr()
        with server.client() as c:
            (run,) = c.get("/v1/runs").json()["runs"]
            report = wait_for_state(c, run["run_id"], ["succeeded"])
        assert report["name"] == "from-cli"
        assert [t["output"] for t in report["tasks"]] == ["t0", "t1", "t2"]
    finally:
        server.stop()
