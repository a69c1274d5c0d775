"""``/mcp`` on ``metaagent serve``: the MCP server over streamable HTTP, on the service's own
app, behind its bearer auth (the app's ``Guard`` covers ``/mcp``: 401 without the token), with
the SDK's DNS-rebinding protection set for the host the server is bound to.

Its tools call the serving app in process, so a run submitted over MCP is the service's run:
listed by ``GET /v1/runs``, watched by the dashboard, cancelled by the CLI.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from mcp.server.transport_security import TransportSecuritySettings

from metaagent.mcp.api import in_process
from metaagent.mcp.server import MetaagentMCP

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from metaagent.service.auth import Tokens
    from metaagent.service.core import Service

__all__ = ["MCP_PATH", "mount_mcp", "transport_security"]

MCP_PATH = "/mcp"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ANY = ("0.0.0.0", "::", "")


def transport_security(host: str) -> TransportSecuritySettings:
    """Which ``Host`` and ``Origin`` headers ``/mcp`` answers, for a server bound to ``host``.

    Loopback: only loopback names. A named host or address: that one (and loopback). Every
    interface (``0.0.0.0``): the names it is reached by are not known here, so the check is
    off and the bearer token (which a rebinding page cannot know) is the guard."""
    if host in _ANY:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if host not in _LOOPBACK:
        name = f"[{host}]" if ":" in host else host
        hosts += [name, f"{name}:*"]
        origins += [f"http://{name}:*", f"https://{name}:*", f"https://{name}"]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def mount_mcp(app: FastAPI, service: Service, tokens: Tokens, host: str, max_body: int) -> None:
    """Serve the MCP server at ``/mcp`` of ``app`` (call it before the app's catch-all mount);
    its session manager and watcher run inside the app's lifespan, after the service starts."""
    mcp = MetaagentMCP(in_process(service, app, tokens.write, "this server"))
    http_app = mcp.server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(host),
        max_request_body_size=max_body,
        host=host,
    )
    app.router.routes.extend(http_app.routes)  # one Route at /mcp, no middleware of its own
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:  # the service starts first and closes last
            async with mcp.server.session_manager.run(), mcp.watching():
                yield state
            await mcp.api.http.aclose()

    app.router.lifespan_context = lifespan
