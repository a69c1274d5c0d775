"""The event streams: SSE per run (resumable with ``Last-Event-ID``) and the WebSocket of every
run (or one, resumable with ``after_seq``). Both send the stored events a client missed, then
the live ones, so that it gets every event once, in ``seq`` order."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from metaagent.service.auth import Access, bearer
from metaagent.service.core import NotFound

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from metaagent.service.auth import Tokens
    from metaagent.service.core import Service
    from metaagent.service.eventlog import Chunk, EventLog, Subscriber

__all__ = ["AUTH_TIMEOUT_S", "CLOSE_SLOW", "CLOSE_UNAUTHORIZED", "stream_router"]

stream_router = APIRouter()

AUTH_TIMEOUT_S = 10.0
KEEPALIVE_S = 15.0
CLOSE_UNAUTHORIZED = 4401
CLOSE_SLOW = 4408
CLOSE_GOING_AWAY = 1001


def _sse(chunks: list[Chunk]) -> tuple[str, bool]:
    """SSE messages of ``chunks``, and whether the run's ``finished`` event is among them."""
    parts: list[str] = []
    finished = False
    for seq, line in (item for c in chunks for item in c.items):
        ev = json.loads(line)
        finished = finished or (ev.get("type") == "run" and ev.get("state") == "finished")
        parts.append(f"id: {seq}\nevent: {ev.get('type')}\ndata: {line}\n\n")
    return "".join(parts), finished


@stream_router.get(
    "/v1/runs/{run_id}/events",
    tags=["events"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def run_events(
    request: Request,
    run_id: str,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The run's events as Server-Sent Events: stored ones after ``Last-Event-ID``, then live
    ones; the stream ends with the run's ``finished`` event."""
    service: Service = request.app.state.service
    row = await asyncio.to_thread(service.store.row, run_id)
    if row is None:
        raise NotFound(f"no run {run_id!r}")
    after = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else 0
    log = service.events
    sub = log.subscribe(run_id)

    async def stream() -> AsyncIterator[str]:
        try:
            async for page in log.catch_up(sub, after):
                text, finished = _sse([page])
                yield text
                if finished:
                    return
            if row.finished_at is not None:
                return  # finished, and its end was not recorded as an event: nothing follows
            while True:
                batch = await sub.next_batch(KEEPALIVE_S)
                if not batch:
                    if sub.closed:
                        return
                    yield ": keep-alive\n\n"
                    continue
                text, finished = _sse(batch)
                yield text
                if finished:
                    return
        finally:
            log.unsubscribe(sub)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _frame(chunks: list[Chunk]) -> str:
    return '{"type":"events","events":[' + ",".join(c.text for c in chunks) + "]}"


async def _authenticate(ws: WebSocket, tokens: Tokens) -> Access:
    header = ws.headers.get("authorization")
    if header is not None:
        return tokens.check(bearer(header))
    try:
        first = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S)
        doc: Any = json.loads(first)
    except (TimeoutError, ValueError, KeyError, RuntimeError):
        return Access.NONE
    token = doc.get("token") if isinstance(doc, dict) else None
    return tokens.check(token if isinstance(token, str) else None)


@stream_router.websocket("/v1/events")
async def events_ws(
    ws: WebSocket,
    run_id: Annotated[str | None, Query()] = None,
    after_seq: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    """Every run's events (or ``run_id``'s), after ``after_seq`` when given, then live."""
    service: Service = ws.app.state.service
    await ws.accept()
    if await _authenticate(ws, ws.app.state.tokens) is Access.NONE:
        await ws.close(CLOSE_UNAUTHORIZED, "missing or wrong token")
        return
    log = service.events
    sub = log.subscribe(run_id)
    head = log.head
    reader = asyncio.ensure_future(_until_gone(ws, sub))
    try:
        await ws.send_text(json.dumps({"type": "hello", "head_seq": head}))
        await _feed(ws, log, sub, head if after_seq is None else after_seq)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
    finally:
        log.unsubscribe(sub)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _feed(ws: WebSocket, log: EventLog, sub: Subscriber, after: int) -> None:
    async for page in log.catch_up(sub, after):
        await ws.send_text(_frame([page]))
    while True:
        batch = await sub.next_batch()
        if batch:
            await ws.send_text(_frame(batch))
        elif sub.closed:
            code = CLOSE_SLOW if sub.overflowed else CLOSE_GOING_AWAY
            await ws.close(code, "too slow: reconnect with after_seq" if sub.overflowed else "")
            return


async def _until_gone(ws: WebSocket, sub: Subscriber) -> None:
    """Read (and ignore) what the client sends, to notice when it goes."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
    except (WebSocketDisconnect, RuntimeError):
        pass
    sub.close()
