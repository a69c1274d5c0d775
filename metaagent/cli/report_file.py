"""Where ``run --json`` and ``resume --json`` write the report: a file, checked before the run
starts, or standard output (``-``), which then carries nothing else."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.cli.console import err, err_unwrapped, invalid_input, out

if TYPE_CHECKING:
    from rich.console import Console

STDOUT = Path("-")
"""``--json -``: the report goes to standard output; the summary goes to standard error."""


def to_stdout(path: Path | None) -> bool:
    """True when the report goes to standard output."""
    return path == STDOUT


def human_console(path: Path | None) -> Console:
    """Where the summary goes: standard error when standard output carries the report."""
    return err if to_stdout(path) else out


def check_report_path(path: Path | None) -> None:
    """Exit 2, naming ``--json``, if the report could not be written to ``path``.

    Checked before the run starts, so that no run is made whose report would be lost: the path
    is not a directory, a file there is writable, and else its nearest existing ancestor is a
    directory in which files can be created.
    """
    if path is None or to_stdout(path):
        return
    problem = _problem(path)
    if problem is not None:
        raise invalid_input(f"--json {path}: {problem}", console=err_unwrapped)


def _problem(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else "the file is not writable"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create files in {ancestor} (permission denied)"
    return None


def write_report(report: object, path: Path) -> None:
    """Write ``report`` as JSON to ``path`` (``-``: standard output); exit 2 if it fails."""
    text = json.dumps(report, indent=2, default=str) + "\n"
    if to_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        message = f"--json {path}: the report could not be written: {exc}"
        raise invalid_input(message, console=err_unwrapped) from None
    out.print(f"report written to {path}", highlight=False)
