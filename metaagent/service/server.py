"""Running the service: uvicorn on one event loop with the app, until SIGTERM or SIGINT.

On a stop signal uvicorn stops taking requests and closes the app: every attempt in flight is
journaled ``lost`` (the next start resumes its run and routes it again, uncharged), then the
orchestrator closes, the events are stored and the process exits.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import uvicorn

from metaagent.service.app import MAX_BODY_BYTES, create_app
from metaagent.service.auth import load_tokens
from metaagent.service.core import Service

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.runtime.config import OrchestratorConfig

__all__ = ["serve"]

GRACE_S = 3  # open event streams get this long to end at a stop


class _Server(uvicorn.Server):
    """uvicorn's server, saying where it listens once it does."""

    def __init__(self, config: uvicorn.Config, service: Service, note: str) -> None:
        super().__init__(config)
        self.service = service
        self.note = note

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)  # type: ignore[arg-type]
        resumed = self.service.resumed  # said first: the listening line means ready
        if resumed:
            print(f"metaagent serve: resumed {len(resumed)} open runs: {', '.join(resumed[:10])}",
                  file=sys.stderr, flush=True)  # fmt: skip
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                print(f"metaagent serve: listening on http://{host}:{port}{self.note}",
                      file=sys.stderr, flush=True)  # fmt: skip


def serve(
    *,
    host: str,
    port: int,
    db: Path,
    config: OrchestratorConfig,
    token_file: Path | None,
    durability: str = "normal",
    max_body: int = MAX_BODY_BYTES,
) -> None:
    """Serve until stopped. Prints where it listens (and a generated token's file) on stderr."""
    tokens = load_tokens(token_file, db.parent)
    service = Service(db, config, durability=durability)
    app = create_app(service, tokens, max_body=max_body, mcp_host=host)
    note = f" (journal {db})"
    if tokens.generated is not None:
        note += f"; token written to {tokens.generated} (mode 0600)"
    uv = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on", ws="websockets-sansio",
        timeout_graceful_shutdown=GRACE_S, access_log=False,
    )  # fmt: skip
    asyncio.run(_Server(uv, service, note).serve())
