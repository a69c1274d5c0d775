"""The FastAPI app of ``metaagent serve``: auth and size limits around the v1 routes, the event
streams, ``/metrics``, ``/healthz`` and the dashboard's static files at ``/``."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from metaagent.errors import CapacityError, MetaAgentError, RunOwned, WorkflowError
from metaagent.journal.base import JournalError
from metaagent.service.auth import Access, bearer
from metaagent.service.core import Conflict, NotFound
from metaagent.service.metrics import Metrics
from metaagent.service.routes import router
from metaagent.service.streams import stream_router

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from metaagent.service.auth import Tokens
    from metaagent.service.core import Service

__all__ = ["DASHBOARD_DIR", "MAX_BODY_BYTES", "create_app"]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Request bodies at most (a 10,000-task workflow is a few MB)."""
RETRY_AFTER_S = 5

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_OPEN = ("/healthz",)
_GUARDED = ("/v1/", "/metrics", "/openapi.json", "/mcp")
_READ_METHODS = ("GET", "HEAD", "OPTIONS")


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: bearer auth before anything else (401 / 403), and 413 for a body past
    ``max_body``. WebSockets authenticate in their handler (browsers cannot set headers)."""

    def __init__(self, app: ASGIApp, tokens: Tokens, max_body: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path not in _OPEN and path.startswith(_GUARDED):
            header = dict(scope["headers"]).get(b"authorization")
            access = self.tokens.check(bearer(None if header is None else header.decode("latin-1")))
            if access is Access.NONE:
                await _answer(
                    send, 401, "missing or wrong bearer token", {"www-authenticate": "Bearer"}
                )
                return
            if access is Access.READ and scope["method"] not in _READ_METHODS:
                await _answer(send, 403, "this token may only read", {})
                return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > self.max_body:
                await _answer(send, 413, f"request body over {self.max_body} bytes", {})
                return
            await self.app(scope, receive, send)  # the server holds the body to its length
            return
        if scope["method"] in _READ_METHODS:
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read it all here, up to the bound, then hand it on.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                await _answer(send, 413, f"request body over {self.max_body} bytes", {})
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def create_app(
    service: Service,
    tokens: Tokens,
    *,
    max_body: int = MAX_BODY_BYTES,
    dashboard: Path | None = None,
    mcp_host: str | None = None,
) -> FastAPI:
    """The app serving ``service``; the service is started and closed with the app. With
    ``mcp_host`` (the address it is bound to) the MCP server is mounted at ``/mcp``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.aclose()

    app = FastAPI(
        title="metaagent",
        version="1",
        description="Submit workflows, follow their runs, cancel and retry them.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        dependencies=[Security(HTTPBearer(auto_error=False))],
    )
    app.state.service = service
    app.state.tokens = tokens
    metrics = Metrics(service.orch, service.events)
    app.state.metrics = metrics
    service.announce.observers.append(metrics.observe)
    service.orch.on_commit = metrics.commit.observe
    _errors(app)

    @app.get("/healthz", tags=["service"], dependencies=[])
    async def healthz() -> dict[str, object]:
        """Liveness, without a token."""
        return {"ok": True, "events_head": service.events.head}

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics_text() -> Response:
        """The service's figures, Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    app.include_router(stream_router)
    if mcp_host is not None and importlib.util.find_spec("mcp") is not None:
        from metaagent.mcp.http import mount_mcp  # /mcp, with the mcp extra installed

        mount_mcp(app, service, tokens, mcp_host, max_body)
    folder = dashboard or DASHBOARD_DIR
    app.mount("/", StaticFiles(directory=folder, html=True, check_dir=False), name="dashboard")
    app.add_middleware(Guard, tokens=tokens, max_body=max_body)
    return app


def _errors(app: FastAPI) -> None:
    def handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
            return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

        return handle

    app.add_exception_handler(WorkflowError, handler(422))
    app.add_exception_handler(CapacityError, handler(429))
    app.add_exception_handler(NotFound, handler(404))
    app.add_exception_handler(Conflict, handler(409))
    app.add_exception_handler(RunOwned, handler(409))
    app.add_exception_handler(JournalError, handler(503))
    app.add_exception_handler(MetaAgentError, handler(422))
