"""``metaagent mcp`` over stdio: the server on this process's stdin and stdout (stdout carries
only the protocol; messages go to stderr), until the client closes stdin or a stop signal.

Embedded by default (an own service on the journal: its open runs resumed at the start,
attempts in flight journaled lost at the end and resumed by the next start), attached with a
server URL (checked at the start, so a wrong URL or token is said at once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
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


async def _serve(
    opener: AbstractAsyncContextManager[Api], remote: bool, stop: asyncio.Event
) -> None:
    async with opener as api:
        if remote:
            await _check(api)
        mcp = MetaagentMCP(api)
        async with mcp.watching():
            serving = asyncio.create_task(mcp.server.run_stdio_async())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if serving.done():
                serving.result()  # stdin closed (or the transport failed: raised here)
            else:
                # Not awaited: the SDK's stdin reader blocks in a thread until stdin closes.
                serving.cancel()
    # Left the opener: an embedded service has journaled its attempts in flight as lost.


async def _main(opener: AbstractAsyncContextManager[Api], remote: bool) -> int | None:
    stop = asyncio.Event()
    stopped_by: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        stopped_by.append(int(sig))
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await _serve(opener, remote, stop)
    return stopped_by[0] if stopped_by else None


def serve_stdio(*, db: Path, config: OrchestratorConfig, server: str | None, token: str) -> None:
    """Serve until stdin closes; after SIGTERM / SIGINT, once everything of ours is closed (an
    embedded service's attempts journaled lost), exit 128 + the signal's number at once: the
    SDK's stdin reader stays blocked in its thread, which no orderly shutdown could join.
    ``StartError`` when it cannot start."""
    opener = attached(server, token) if server is not None else embedded(db, config)
    runner = asyncio.Runner()
    try:
        stopped_by = runner.run(_main(opener, server is not None))
    except BaseException:
        runner.close()
        raise
    if stopped_by is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + stopped_by)  # 143 after SIGTERM, 130 after SIGINT
    runner.close()
