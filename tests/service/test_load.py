"""Load, bounded in count and time, on loopback: 100 WebSocket clients follow every event while
20 submitters send workflows; every client's seq is gap-free and duplicate-free, and nothing
accepted is lost (every accepted run finished, and every client saw it finish)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from server_helpers import TOKEN, running_server, workflow
from ws_clients import Follower, gaps_and_duplicates

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

CLIENTS = 100
SUBMITTERS = 20
SUBMIT_FOR_S = 12.0
DRAIN_WITHIN_S = 18.0  # 30 s in all at most


async def submitter(
    url: str, n: int, until: float, accepted: list[str], refused: list[int]
) -> None:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as c:
        i = 0
        while time.monotonic() < until:
            doc = workflow(4, name=f"load-{n}-{i}", chain=i % 2 == 0)
            r = await c.post("/v1/runs", json={"workflow": doc, "labels": {"by": str(n)}})
            if r.status_code == 201:
                accepted.append(r.json()["run_id"])
            else:
                assert r.status_code == 429, r.text  # a full queue is the only refusal
                refused.append(r.status_code)
                await asyncio.sleep(float(r.headers["retry-after"]) / 10)
            i += 1
            await asyncio.sleep(0.05)


async def scenario(url: str) -> tuple[list[Follower], list[str], list[int], dict[str, Any]]:
    ws_url = "ws" + url.removeprefix("http") + "/v1/events"
    stop = asyncio.Event()
    followers = [Follower(lambda: ws_url, TOKEN) for _ in range(CLIENTS)]
    readers = [asyncio.ensure_future(f.run(stop)) for f in followers]
    deadline = time.monotonic() + 20
    while sum(1 for f in followers if f.heads) < CLIENTS:  # all connected before any event
        assert time.monotonic() < deadline, "the clients could not connect"
        await asyncio.sleep(0.05)
    accepted: list[str] = []
    refused: list[int] = []
    until = time.monotonic() + SUBMIT_FOR_S
    await asyncio.gather(*(submitter(url, n, until, accepted, refused) for n in range(SUBMITTERS)))
    want = set(accepted)
    drain = time.monotonic() + DRAIN_WITHIN_S
    while time.monotonic() < drain and not all(want <= f.finished_runs() for f in followers):  # noqa: ASYNC110 (polls what 100 readers gathered)
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*readers)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as c:
        listed: dict[str, Any] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/v1/runs", params=params)).json()
            listed.update({r["run_id"]: r for r in page["runs"]})
            cursor = page["next_cursor"]
            if cursor is None:
                break
    return followers, accepted, refused, listed


def test_100_clients_and_20_submitters(tmp_path: Any) -> None:
    with running_server(tmp_path, args=["--max-concurrency", "64"]) as server:
        followers, accepted, _refused, listed = asyncio.run(scenario(server.url))
    assert len(accepted) >= SUBMITTERS  # every submitter got through at least once
    for run_id in accepted:  # nothing accepted is lost
        assert listed[run_id]["state"] == "succeeded", listed[run_id]
    first = [e["seq"] for e in followers[0].events]
    reconnects = sum(f.reconnects for f in followers)
    print(f"load: {len(accepted)} runs accepted, {len(first)} events to each of {CLIENTS} "
          f"clients, {reconnects} reconnects")  # fmt: skip
    for f in followers:
        seqs = [e["seq"] for e in f.events]
        missing, dups = gaps_and_duplicates(seqs)
        assert not missing, f"a client missed {len(missing)} events, first {missing[:5]}"
        assert not dups, f"a client got {len(dups)} events twice, first {dups[:5]}"
        assert seqs[0] == 1
        assert set(accepted) <= f.finished_runs()
        assert seqs == first[: len(seqs)] or first == seqs[: len(first)]
