"""``metaagent serve``: the HTTP service (REST, events, metrics, dashboard) over a journal.

Needs the ``server`` extra (FastAPI, uvicorn). Exit 2 for bad options (a token file that cannot
be read, a journal that cannot be opened); 143 / 130 after SIGTERM / SIGINT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metaagent.cli.console import invalid_input
from metaagent.cli.inputs import DbOption, DurabilityChoice, DurabilityOption
from metaagent.cli.run import BackendChoice  # noqa: TC001 - typer reads annotations at run time
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.workflow.schema import SettingsModel
from metaagent.workflow.settings import Overrides, orchestrator_config


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any).")] = 8787,
    db: DbOption = DEFAULT_PATH,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File whose first line is the token (default: METAAGENT_TOKEN, else one "
            "generated into token beside the journal).",
        ),
    ] = None,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Directory the agents work in.")
    ] = Path("."),
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Tasks running at once.")
    ] = None,
    max_queued: Annotated[
        int | None,
        typer.Option("--max-queued", min=1, help="Accepted unfinished tasks at most (429 past)."),
    ] = None,
    max_agents: Annotated[
        int | None, typer.Option("--max-agents", min=1, help="Agent instances at most.")
    ] = None,
    max_body_mb: Annotated[
        int, typer.Option("--max-body-mb", min=1, help="Request bodies at most (413 past).")
    ] = 64,
    durability: DurabilityOption = DurabilityChoice.normal,
    backend: Annotated[
        BackendChoice | None,
        typer.Option("--backend", help="How agents run (local; ray: docs/ray.md)."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Backend ray: auto or the head's HOST:PORT."),
    ] = None,
) -> None:
    """Serve the REST + WebSocket API and the dashboard; resume the journal's open runs."""
    try:
        from metaagent.service.auth import TokenError
        from metaagent.service.server import serve
    except ImportError as exc:  # the server extra is not installed
        raise invalid_input(f"{exc}: install it with pip install 'metaagent[server]'") from None
    if not workdir.is_dir():
        raise invalid_input(f"--workdir {workdir}: not a directory")
    flags = Overrides(
        max_concurrency=max_concurrency, max_queued=max_queued, max_agents=max_agents,
        backend=None if backend is None else backend.value, ray_address=ray_address,
    )  # fmt: skip
    config = orchestrator_config(SettingsModel(), flags, workdir=workdir, task_count=0)
    try:
        serve(
            host=host, port=port, db=db, config=config, token_file=token_file,
            durability=durability.value, max_body=max_body_mb * 1024 * 1024,
        )  # fmt: skip
    except TokenError as exc:
        raise invalid_input(exc) from None
    except OSError as exc:
        raise invalid_input(f"--db {db} / --host {host} --port {port}: {exc}") from None
