"""How the MCP server reaches runs: the REST API v1 of ``metaagent serve``, so that an assistant,
the dashboard and the CLI see the same runs with the same validation and the same messages.

- attached (``--server URL``): a running service, over HTTP (httpx) with its bearer token;
- embedded (the default): an own ``Service`` in this process (its own orchestrator on the
  local SQLite journal, holding the runs' leases), reached through its app in process;
- mounted (``/mcp`` on ``metaagent serve``): the serving process's own service, likewise.

Besides requests, an ``Api`` follows events: one run's (``run_events``, ending with its
``finished`` event, for ``wait_run``) and what changes (``changes``: which runs, and whether
the pool, coalesced, for resource subscriptions).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from metaagent.core.decisions import QuarantineAgent, SpawnAgent, TerminateAgent

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from pathlib import Path

    from metaagent.runtime.config import OrchestratorConfig
    from metaagent.runtime.events import Event as RuntimeEvent
    from metaagent.service.core import Service

__all__ = ["POOL_DECISIONS", "Api", "ApiError", "Changes", "attached", "embedded", "in_process"]

Event = dict[str, Any]
POOL_DECISIONS = frozenset({"spawn_agent", "terminate_agent", "quarantine_agent"})
_POOL_TYPES = (SpawnAgent, TerminateAgent, QuarantineAgent)
READ_TIMEOUT_S = 60.0
RECONNECT_S = 1.0


class ApiError(Exception):
    """A request the service refused (or could not be made): its status and message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status  # 0: the service could not be reached
        self.detail = detail


@dataclass(slots=True)
class Changes:
    """What changed since the last ``Changes``: these runs, and the pool or not."""

    runs: set[str] = field(default_factory=set)
    agents: bool = False

    def add(self, run_id: object, kind: object, decision_type: object) -> None:
        if isinstance(run_id, str) and run_id:
            self.runs.add(run_id)
        if kind == "task" or decision_type in POOL_DECISIONS:
            self.agents = True  # a task moving changes an instance's load


class Feed(Protocol):
    async def head(self) -> int: ...
    def run_events(self, run_id: str, after: int) -> AsyncGenerator[Event, None]: ...
    def changes(self) -> AsyncGenerator[Changes, None]: ...


class Api:
    """Requests to the v1 API and the feeds of its events."""

    def __init__(self, http: httpx.AsyncClient, where: str, feed: Feed) -> None:
        self.http = http
        self.where = where  # for messages: the server's URL, or the embedded journal
        self.feed = feed

    async def call(self, method: str, path: str, *, body: Any = None, params: Any = None) -> Any:
        """The answer's JSON; ``ApiError`` with the service's own message otherwise."""
        try:
            r = await self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"{self.where}: {exc or type(exc).__name__}") from None
        if r.status_code >= 400:
            raise ApiError(r.status_code, _detail(r))
        try:
            return r.json()
        except ValueError:
            raise ApiError(
                r.status_code, f"{self.where}: not a metaagent server's answer: {r.text[:200]!r}"
            ) from None

    async def head(self) -> int:
        """The ``seq`` of the last event stored: follow a run from there, nothing is missed."""
        return await self.feed.head()

    def run_events(self, run_id: str, after: int = 0) -> AsyncGenerator[Event, None]:
        """The run's events after ``seq`` ``after`` (stored ones first), then live ones, until
        its ``finished`` event."""
        return self.feed.run_events(run_id, after)

    def changes(self) -> AsyncGenerator[Changes, None]:
        """What changes from now on, coalesced (a burst of events is one ``Changes``), for as
        long as it is iterated."""
        return self.feed.changes()


def _detail(r: httpx.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        return r.text[:500] or f"HTTP {r.status_code}"
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(detail, str):
        return detail
    return json.dumps(detail if detail is not None else doc)[:2000]


# --- attached: a service over the network ------------------------------------------------------


class _RemoteFeed:
    """Events of a service over the network: SSE for one run, the WebSocket for all."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        self.http = http
        self.url = url
        self.token = token

    async def head(self) -> int:
        try:
            r = await self.http.get("/healthz")
            return int(r.json()["events_head"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return 0  # from the run's first event, then

    async def run_events(self, run_id: str, after: int) -> AsyncGenerator[Event, None]:
        timeout = httpx.Timeout(10.0, read=None)
        headers = {"Last-Event-ID": str(after)} if after else {}
        path = f"/v1/runs/{run_id}/events"
        async with self.http.stream("GET", path, timeout=timeout, headers=headers) as r:
            if r.status_code >= 400:
                await r.aread()
                raise ApiError(r.status_code, _detail(r))
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])

    async def changes(self) -> AsyncGenerator[Changes, None]:
        """From the service's WebSocket: one ``Changes`` per frame; after a drop it reconnects
        with the last ``seq`` it saw, so nothing is missed."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        ws_url = "ws" + self.url.removeprefix("http") + "/v1/events"
        headers = {"Authorization": f"Bearer {self.token}"}
        after: int | None = None
        while True:
            query = "" if after is None else f"?after_seq={after}"
            try:
                async with connect(ws_url + query, additional_headers=headers) as ws:
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("type") == "hello" and after is None:
                            after = int(frame.get("head_seq", 0))
                        got = Changes()
                        for ev in frame.get("events", ()):
                            after = max(after or 0, int(ev.get("seq", 0)))
                            decision = ev.get("decision") or {}
                            got.add(ev.get("run_id"), ev.get("type"), decision.get("type"))
                        if got.runs or got.agents:
                            yield got
            except (OSError, WebSocketException):
                pass
            await asyncio.sleep(RECONNECT_S)  # the server restarted or dropped us: catch up


@asynccontextmanager
async def attached(url: str, token: str) -> AsyncIterator[Api]:
    """An ``Api`` of the service at ``url``."""
    url = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as http:
        yield Api(http, f"--server {url}", _RemoteFeed(http, url, token))


# --- in process: a service of this process ---------------------------------------------------


class _LocalFeed:
    """Events of a service of this process, from its event log (what its SSE serves)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def head(self) -> int:
        return self.service.events.head

    async def run_events(self, run_id: str, after: int) -> AsyncGenerator[Event, None]:
        log = self.service.events
        sub = log.subscribe(run_id)
        try:
            async for chunk in log.catch_up(sub, after):
                for _, line in chunk.items:
                    ev = json.loads(line)
                    yield ev
                    if _finished(ev):
                        return
            while not sub.closed:
                for chunk in await sub.next_batch():
                    for _, line in chunk.items:
                        ev = json.loads(line)
                        yield ev
                        if _finished(ev):
                            return
        finally:
            log.unsubscribe(sub)

    async def changes(self) -> AsyncGenerator[Changes, None]:
        """From the service's own observers (told every runtime event, in the loop that runs
        the attempts): a set add per event, nothing parsed; drained between bursts."""
        pending = Changes()
        wake = asyncio.Event()

        def observe(ev: RuntimeEvent) -> None:
            pool = isinstance(ev.decision, _POOL_TYPES)
            pending.add(ev.run_id, ev.kind, "spawn_agent" if pool else None)
            wake.set()

        observers = self.service.announce.observers
        observers.append(observe)
        try:
            while True:
                await wake.wait()
                wake.clear()
                got = Changes(set(pending.runs), pending.agents)
                pending.runs.clear()
                pending.agents = False
                yield got
        finally:
            observers.remove(observe)


def _finished(ev: Event) -> bool:
    return ev.get("type") == "run" and ev.get("state") == "finished"


def in_process(service: Service, app: Any, token: str, where: str) -> Api:
    """An ``Api`` of ``app`` (the service's FastAPI app) called in process with ``token``."""
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(
        transport=transport,
        base_url="http://metaagent.invalid",
        headers={"Authorization": f"Bearer {token}"},
        timeout=READ_TIMEOUT_S,
    )
    return Api(http, where, _LocalFeed(service))


@asynccontextmanager
async def embedded(db: Path, config: OrchestratorConfig) -> AsyncIterator[Api]:
    """An own service on the journal ``db``: started (its open runs resumed), then closed
    (attempts in flight journaled lost, resumed by the next start)."""
    from metaagent.service.app import create_app
    from metaagent.service.auth import Tokens
    from metaagent.service.core import Service

    service = Service(db, config)
    token = secrets.token_urlsafe(32)  # never leaves this process
    app = create_app(service, Tokens(token))  # no /mcp of its own: this is the MCP server
    api = in_process(service, app, token, f"journal {db}")
    try:
        await service.start()
        yield api
    finally:
        await api.http.aclose()
        await service.aclose()
