"""The event streams of a real server: every event stored with a per-journal seq, SSE resumable
with Last-Event-ID, the WebSocket authenticated by its first message and resumable with
after_seq, filtered by run."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from server_helpers import TOKEN, Server, running_server, wait_for_state, workflow
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from metaagent.core.decisions import SCORE_PARTS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("events")) as s:
        yield s


def run_to_end(server: Server, tasks: int = 3, **kw: Any) -> str:
    with server.client() as c:
        r = c.post("/v1/runs", json={"workflow": workflow(tasks, chain=True, **kw)})
        assert r.status_code == 201
        rid: str = r.json()["run_id"]
        wait_for_state(c, rid, ["succeeded", "failed"])
    return rid


def sse(server: Server, rid: str, last: int | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    out: list[dict[str, Any]] = []
    with httpx.stream(
        "GET", f"{server.url}/v1/runs/{rid}/events", headers=headers, timeout=30
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        ids: list[int] = []
        for line in r.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("data: "):
                out.append(json.loads(line[6:]))
        assert ids == [e["seq"] for e in out]
    return out


def test_sse_tells_a_run_from_submitted_to_finished_and_resumes(server: Server) -> None:
    rid = run_to_end(server, 3)
    events = sse(server, rid)
    assert events[0]["type"] == "run"
    assert events[0]["state"] == "submitted"
    assert events[0]["tasks"] == 3
    assert events[-1]["state"] == "finished"
    assert events[-1]["run_state"] == "succeeded"
    assert events[-1]["counts"] == {"succeeded": 3}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    states = [(e["task_id"], e["state"]) for e in events if e["type"] == "task"]
    assert states == [
        ("t0", "running"), ("t0", "succeeded"), ("t1", "running"), ("t1", "succeeded"),
        ("t2", "running"), ("t2", "succeeded"),
    ]  # fmt: skip
    route = next(e for e in events if e["state"] == "running")
    assert route["decision"]["type"] == "route_task"
    assert route["instance"] == route["decision"]["instance"]
    assert set(route["decision"]["breakdown"]) == set(SCORE_PARTS)
    assert all({"seq", "type", "run_id", "ts", "at", "task_id", "state"} <= set(e) for e in events)
    # Resumed after the third event: exactly the rest.
    assert sse(server, rid, last=events[2]["seq"]) == events[3:]
    with server.client() as c:
        assert c.get("/v1/runs/nope/events").status_code == 404


@contextlib.contextmanager
def ws_connect(
    server: Server, query: str = "", token: str | None = TOKEN, header: bool = False
) -> Iterator[Any]:
    headers = {"Authorization": f"Bearer {token}"} if header and token else None
    with connect(server.ws_url + query, additional_headers=headers, open_timeout=30) as ws:
        if not header:
            ws.send(json.dumps({"token": token}))
        yield ws


def receive_until(ws: Any, done: Any, limit: int = 10_000) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not done(got) and len(got) < limit:
        frame = json.loads(ws.recv(timeout=30))
        assert frame["type"] == "events"
        got.extend(frame["events"])
    return got


def test_the_websocket_needs_a_token_in_its_first_message(server: Server) -> None:
    for token in ("wrong", None):
        with connect(server.ws_url, open_timeout=30) as ws:
            ws.send(json.dumps({"token": token}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401
    with ws_connect(server, header=True) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"


def test_the_websocket_replays_after_seq_then_goes_live(server: Server) -> None:
    first = run_to_end(server, 2)
    stored = sse(server, first)
    with ws_connect(server, f"?after_seq={stored[0]['seq'] - 1}") as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["type"] == "hello"
        assert hello["head_seq"] >= stored[-1]["seq"]
        replay = receive_until(ws, lambda got: got and got[-1]["seq"] >= hello["head_seq"])
        assert [e["seq"] for e in replay] == list(range(stored[0]["seq"], hello["head_seq"] + 1))
        assert replay[: len(stored)] == stored
        second = run_to_end(server, 2)
        live = receive_until(
            ws, lambda got: any(e["run_id"] == second and e["state"] == "finished" for e in got)
        )
    seqs = [e["seq"] for e in replay + live]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # gap-free, duplicate-free
    assert [e for e in live if e["run_id"] == second] == sse(server, second)


def test_the_websocket_filtered_by_run(server: Server) -> None:
    one = run_to_end(server, 2)
    run_to_end(server, 1)
    with ws_connect(server, f"?run_id={one}&after_seq=0") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        got = receive_until(ws, lambda got: got and got[-1]["state"] == "finished")
    assert got == sse(server, one)
    assert {e["run_id"] for e in got} == {one}


def test_gc_takes_a_runs_submission_and_then_its_events(tmp_path: Path) -> None:
    import sqlite3
    import subprocess
    import sys

    with running_server(tmp_path) as s:
        rid = run_to_end(s, 1)
        kept = run_to_end(s, 1)
    events = tmp_path / "journal.db-events"
    done = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "gc", "--older-than", "0s", "--db",
         str(tmp_path / "journal.db")], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with running_server(tmp_path) as s, s.client() as c:
        assert c.get(f"/v1/runs/{rid}").status_code == 404
        assert c.get(f"/v1/runs/{kept}").status_code == 404
    conn = sqlite3.connect(events)
    try:
        left = conn.execute("SELECT count(*) FROM events WHERE run_id IN (?, ?)", (rid, kept))
        assert left.fetchone() == (0,)
    finally:
        conn.close()
    journal = sqlite3.connect(tmp_path / "journal.db")
    try:
        assert journal.execute("SELECT count(*) FROM service_runs").fetchone() == (0,)
    finally:
        journal.close()


def test_pool_decisions_are_events_of_no_run_recorded_once(tmp_path: Path) -> None:
    with running_server(tmp_path) as s:
        with s.client() as c:
            slow = c.post("/v1/runs", json={"workflow": workflow(1, agent="slow", input_=2)})
            slow_id = slow.json()["run_id"]
        quick = run_to_end(s, 2)  # its agent joins the pool while the slow run is open
        with s.client() as c:
            wait_for_state(c, slow_id, ["succeeded"])
        with ws_connect(s, "?after_seq=0") as ws:
            head = json.loads(ws.recv(timeout=30))["head_seq"]
            got = receive_until(ws, lambda got: got and got[-1]["seq"] >= head)
        mine = sse(s, quick)
    spawns = [e for e in got if e["decision"] and e["decision"]["type"] == "spawn_agent"]
    assert sorted(e["agent"] for e in spawns) == ["quick", "slow"]
    assert all(e["run_id"] is None and e["type"] == "decision" for e in spawns)
    assert all(e["run_id"] == quick for e in mine)  # a run's own stream has only its events
