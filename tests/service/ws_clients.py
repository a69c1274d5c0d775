"""WebSocket clients for the load and fault tests: each keeps every event it got and, when the
connection drops (the server was killed, or it was too slow), reconnects with its last seq."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI


@dataclass
class Follower:
    """Follows ``/v1/events`` from ``after_seq`` 0; ``url()`` gives the server's current URL."""

    url: Any  # () -> str: the ws URL of the server now
    token: str
    run_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    reconnects: int = 0
    closes: list[int] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)  # head_seq of each hello

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            query = f"?after_seq={self.last_seq}"
            if self.run_id is not None:
                query += f"&run_id={self.run_id}"
            try:
                async with connect(self.url() + query, open_timeout=10, max_size=None) as ws:
                    await ws.send(json.dumps({"token": self.token}))
                    hello = json.loads(await ws.recv())
                    self.heads.append(int(hello["head_seq"]))
                    await self._read(ws, stop)
            except ConnectionClosed as exc:
                if exc.rcvd is not None:
                    self.closes.append(exc.rcvd.code)
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError):
                pass
            if not stop.is_set():
                self.reconnects += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

    async def _read(self, ws: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            frame = json.loads(raw)
            self.events.extend(frame["events"])

    def finished_runs(self) -> set[str]:
        return {e["run_id"] for e in self.events if e["type"] == "run" and e["state"] == "finished"}


def gaps_and_duplicates(seqs: list[int]) -> tuple[list[int], list[int]]:
    """Seqs missing between the first and the last, and seqs seen more than once."""
    seen: set[int] = set()
    dups = []
    for s in seqs:
        if s in seen:
            dups.append(s)
        seen.add(s)
    missing = [s for s in range(seqs[0], seqs[-1] + 1) if s not in seen] if seqs else []
    return missing, dups
