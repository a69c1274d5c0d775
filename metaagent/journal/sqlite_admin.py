"""The SQL of operating on runs from outside their owner: cancel requests (recorded by one
process, polled and applied by the run's owner) and deleting whole finished runs (``gc``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from metaagent.journal.base import CancelRequest, Collected

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Collection, Sequence

RUN_TABLES = (
    # ``runs`` first: a terminal state may be deleted only once its run row is gone (v7).
    "runs",
    "run_tasks",
    "run_subtasks",
    "tasks",
    "attempts",
    "results",
    "decisions",
    "run_overrides",
    "cancel_requests",
)
"""Every table holding rows of one run (``stats`` and ``leases`` are not: a leased run is never
deleted)."""

_CHUNK = 500  # ids per IN (...) list


def record_cancel(
    conn: sqlite3.Connection, run_id: str, task_ids: Sequence[str] | None, now: float
) -> None:
    """Insert the request (inside the caller's write transaction, which checks the run)."""
    row = conn.execute("SELECT finished_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id!r} in the journal")
    if row[0] is not None:
        raise ValueError(f"run {run_id!r} has finished: there is nothing to cancel")
    if task_ids is None:
        conn.execute(
            "INSERT INTO cancel_requests (run_id, task_id, requested_at) VALUES (?, NULL, ?)",
            (run_id, now),
        )
        return
    missing = _unknown_tasks(conn, run_id, list(dict.fromkeys(task_ids)))
    if missing:
        raise KeyError(f"run {run_id!r} has no task {', '.join(map(repr, missing))}")
    conn.executemany(
        "INSERT INTO cancel_requests (run_id, task_id, requested_at) VALUES (?, ?, ?)",
        [(run_id, t, now) for t in dict.fromkeys(task_ids)],
    )


def _unknown_tasks(conn: sqlite3.Connection, run_id: str, ids: list[str]) -> list[str]:
    """The ids among ``ids`` that are neither a task of the run nor one of its sub-tasks."""
    known: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        known.update(
            t
            for (t,) in conn.execute(
                f"SELECT task_id FROM tasks WHERE run_id = ? AND task_id IN ({marks})",
                [run_id, *chunk],
            )
        )
    left = [t for t in ids if t not in known]
    if left:
        for (doc,) in conn.execute("SELECT tasks FROM run_subtasks WHERE run_id = ?", (run_id,)):
            known.update(str(t["id"]) for t in json.loads(doc))
    return [t for t in left if t not in known]


def pending_cancels(conn: sqlite3.Connection, run_ids: Collection[str]) -> list[CancelRequest]:
    """The requests of these runs not applied yet, oldest first: one query on the partial
    index of pending requests."""
    runs = list(run_ids)
    if not runs:
        return []
    marks = ",".join("?" * len(runs))
    rows = conn.execute(
        "SELECT id, run_id, task_id, requested_at FROM cancel_requests"
        f" WHERE done_at IS NULL AND run_id IN ({marks}) ORDER BY id",
        runs,
    ).fetchall()
    return [CancelRequest(int(i), str(r), None if t is None else str(t), float(at))
            for i, r, t, at in rows]  # fmt: skip


def collectable(conn: sqlite3.Connection, cutoff: float) -> list[str]:
    """The runs that finished before ``cutoff`` (wall clock) and that nobody leases."""
    return [
        str(r)
        for (r,) in conn.execute(
            "SELECT run_id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?"
            " AND run_id NOT IN (SELECT run_id FROM leases) ORDER BY finished_at",
            (cutoff,),
        )
    ]


def collect(conn: sqlite3.Connection, cutoff: float, *, dry_run: bool) -> Collected:
    """Delete every row of the runs ``collectable`` names (inside the caller's write
    transaction, which keeps the choice and the deletion one step), or with ``dry_run`` count
    them."""
    runs = collectable(conn, cutoff)
    rows = 0
    for i in range(0, len(runs), _CHUNK):
        chunk = runs[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for table in RUN_TABLES:
            if dry_run:
                (n,) = conn.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE run_id IN ({marks})", chunk
                ).fetchone()
                rows += int(n)
            else:
                cur = conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)
                rows += cur.rowcount
    return Collected(runs, rows)
