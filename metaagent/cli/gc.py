"""``metaagent gc --older-than 30d``: delete the finished runs the journal has held long enough.

Every row of every table of such a run goes, all runs in one transaction; an unfinished run,
or one a process leases, is never touched. Exit 0, or 2 for an age it cannot read.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from metaagent.cli.console import invalid_input, out
from metaagent.cli.inputs import DbOption, stored_journal
from metaagent.journal.sqlite import DEFAULT_PATH

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_age(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d`` in seconds; ``ValueError`` for anything else."""
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"--older-than {text!r}: give a number with s, m, h or d (as 30d)")
    return float(match[1]) * _UNIT_S[match[2]]


def gc_command(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Delete runs finished longer ago than this (30d, 12h)."),
    ],
    db: DbOption = DEFAULT_PATH,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete finished runs older than an age from the journal (never an unfinished one)."""
    try:
        age_s = parse_age(older_than)
    except ValueError as exc:
        raise invalid_input(exc) from None
    store = stored_journal(db)
    try:
        gone = store.delete_finished(age_s, dry_run=dry_run)
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    runs = "run" if len(gone.runs) == 1 else "runs"
    out.print(f"{verb} {len(gone.runs)} {runs} ({gone.rows} rows)", highlight=False)
