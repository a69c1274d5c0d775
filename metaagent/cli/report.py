"""``metaagent report RUN --html OUT.html``: one self-contained HTML file of a journaled run.
Exit code 2 means invalid input (no journal, no such run, a file that cannot be written)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metaagent.cli.console import err_unwrapped, invalid_input, out
from metaagent.cli.inputs import DbOption, RunIdArgument, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH
from metaagent.report.html import write_html

HtmlOption = Annotated[
    Path,
    typer.Option(
        "--html",
        help="Write the run as one self-contained HTML file (timeline, DAG, tasks, decisions).",
    ),
]


def report_command(run_id: RunIdArgument, html: HtmlOption, db: DbOption = DEFAULT_PATH) -> None:
    """Write a report of a journaled run: one HTML file, nothing else needed to open it."""
    if html.is_dir():
        raise invalid_input(f"--html {html}: is a directory", console=err_unwrapped)
    store = stored_journal(db, console=err_unwrapped)
    try:
        stored = store.load_run(run_id)
    except KeyError:
        raise invalid_input(f"no run {run_id!r} in {db}", console=err_unwrapped) from None
    finally:
        store.close()
    try:
        size = write_html(stored, html)
    except OSError as exc:
        raise invalid_input(
            f"--html {html}: cannot be written: {exc}", console=err_unwrapped
        ) from None
    out.print(
        f"report of {run_id} ({len(stored.tasks)} tasks, {size / 1024:.0f} KiB) written to {html}",
        highlight=False,
        markup=False,
    )
