"""``metaagent mcp`` over stdio: the server on this process's stdin and stdout (stdout carries
only the protocol; messages go to stderr), until the client closes stdin or a stop signal.

Embedded by default (an own service on the journal: its open runs resumed at the start,
attempts in flight journaled lost at the end and resumed by the next start), attached with a
server URL (checked at the start, so a wrong URL or token is said at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from metaagent.mcp.api import ApiError, attached, embedded
from metaagent.mcp.server import MetaagentMCP

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from metaagent.mcp.api import Api
    from metaagent.runtime.config import OrchestratorConfig

__all__ = ["StartError", "serve_stdio"]


class StartError(Exception):
    """The server could not start (a service that does not answer, a wrong token)."""


async def _check(api: Api) -> None:
    """A first call to an attached server, so that a wrong URL or token fails at once."""
    try:
        await api.call("GET", "/v1/runs", params={"limit": 1})
    except ApiError as exc:
        hint = " (set METAAGENT_TOKEN to the server's token)" if exc.status == 401 else ""
        raise StartError(f"{exc.detail}{hint}") from None


async def _serve(opener: AbstractAsyncContextManager[Api], remote: bool) -> None:
    async with opener as api:
        if remote:
            await _check(api)
        mcp = MetaagentMCP(api)
        async with mcp.watching():
            await mcp.server.run_stdio_async()


async def _main(opener: AbstractAsyncContextManager[Api], remote: bool) -> None:
    task = asyncio.create_task(_serve(opener, remote))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def serve_stdio(*, db: Path, config: OrchestratorConfig, server: str | None, token: str) -> None:
    """Serve until stdin closes or SIGTERM / SIGINT; ``StartError`` when it cannot start."""
    if server is not None:
        asyncio.run(_main(attached(server, token), True))
    else:
        asyncio.run(_main(embedded(db, config), False))
