"""Group commit for the SQLite journal: the rows written since the last flush, and the write
transaction that applies a batch of them all or nothing, retrying transient faults."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent import crashpoints
from metaagent.journal.base import JournalError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from metaagent.core.learning import ArmStats

_TRANSIENT = ("database is locked", "database is busy", "disk i/o error", "unable to open")

# Rows of ``attempts_done`` are (finished_at, outcome, error, run_id, task_id, number[, log,
# usage]): the log and usage come last so that the run stays at index 3; a row without them
# leaves them as they are.
_ATTEMPT_DONE = (
    "UPDATE attempts SET finished_at = ?1, outcome = ?2, error = ?3{}"
    " WHERE run_id = ?4 AND task_id = ?5 AND number = ?6"
)
_ATTEMPT_DONE_LOG = _ATTEMPT_DONE.format(", log = ?7")
_ATTEMPT_DONE_LOG_USAGE = _ATTEMPT_DONE.format(", log = ?7, usage = ?8")
_ATTEMPT_DONE_NO_LOG = _ATTEMPT_DONE.format("")
_ATTEMPT_DONE_BY_LEN = {6: _ATTEMPT_DONE_NO_LOG, 7: _ATTEMPT_DONE_LOG, 8: _ATTEMPT_DONE_LOG_USAGE}


_RUN_AT = (
    ("attempts_new", 0),
    ("attempts_done", 3),
    ("results", 0),
    ("decisions", 0),
    ("finished_runs", 1),
    ("subtasks", 0),
    ("cancels_done", 2),
)
"""The lists of rows of a ``Batch`` that belong to a run, with where each row holds its run."""


@dataclass(slots=True)
class Batch:
    """Rows written but not yet flushed, as the parameters of the statements that apply them."""

    attempts_new: list[tuple[object, ...]] = field(default_factory=list)
    attempts_done: list[tuple[object, ...]] = field(default_factory=list)
    results: list[tuple[object, ...]] = field(default_factory=list)
    decisions: list[tuple[object, ...]] = field(default_factory=list)
    finished_runs: list[tuple[float, str]] = field(default_factory=list)
    stats: dict[tuple[str, str], ArmStats] = field(default_factory=dict)
    subtasks: list[tuple[str, str]] = field(default_factory=list)  # (run, JSON list of tasks)
    cancels_done: list[tuple[float, int, str]] = field(default_factory=list)  # (at, id, run)

    def __len__(self) -> int:
        return (
            len(self.attempts_new) + len(self.attempts_done) + len(self.results)
            + len(self.decisions) + len(self.finished_runs) + len(self.stats)
            + len(self.subtasks) + len(self.cancels_done)
        )  # fmt: skip

    def run_ids(self) -> set[str]:
        """The runs this batch writes rows of (one pass over its rows, once per flush)."""
        runs = {r[0] for r in self.attempts_new}
        runs.update(r[3] for r in self.attempts_done)
        runs.update(r[0] for r in self.results)
        runs.update(r[0] for r in self.decisions)
        runs.update(r[1] for r in self.finished_runs)
        runs.update(r[0] for r in self.subtasks)
        runs.update(r[2] for r in self.cancels_done)
        return {str(r) for r in runs}

    def extend(self, later: Batch) -> None:
        """Append the rows of ``later`` (recorded after this batch's)."""
        for name, _ in _RUN_AT:
            getattr(self, name).extend(getattr(later, name))
        self.stats.update(later.stats)

    def drop(self, runs: set[str]) -> None:
        """Forget every row of these runs (their lease was lost: they must never be written)."""
        for name, at in _RUN_AT:
            setattr(self, name, [r for r in getattr(self, name) if r[at] not in runs])

    def apply(self, conn: sqlite3.Connection) -> None:
        """Write every row of the batch (inside the caller's transaction)."""
        if self.attempts_new:
            conn.executemany(
                "INSERT INTO attempts (run_id, task_id, number, agent, instance, started_at)"
                " VALUES (?,?,?,?,?,?)",
                self.attempts_new,
            )
        if self.attempts_done:
            by_len: dict[int, list[tuple[object, ...]]] = {}
            for r in self.attempts_done:
                by_len.setdefault(len(r), []).append(r)
            for n, rows in by_len.items():
                statement = _ATTEMPT_DONE_BY_LEN.get(n)
                if statement is None:
                    raise ValueError(f"an attempts_done row has {n} fields, not 6, 7 or 8")
                conn.executemany(statement, rows)
        crashpoints.hit("inside_transaction")
        for run_id, doc in self.subtasks:
            conn.execute(
                "INSERT INTO run_subtasks VALUES (?, (SELECT COALESCE(MAX(seq) + 1, 0)"
                " FROM run_subtasks WHERE run_id = ?), ?)",
                (run_id, run_id, doc),
            )
        if self.results:
            conn.executemany("INSERT INTO results VALUES (?,?,?,?,?,?)", self.results)
        if self.decisions:
            conn.executemany("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?)", self.decisions)
        self._apply_ends(conn)

    def _apply_ends(self, conn: sqlite3.Connection) -> None:
        """The runs' ends, the cancel requests applied and the statistics of the batch."""
        if self.finished_runs:
            conn.executemany(
                "UPDATE runs SET finished_at = ? WHERE run_id = ? AND finished_at IS NULL",
                self.finished_runs,
            )
        if self.cancels_done:
            conn.executemany(
                "UPDATE cancel_requests SET done_at = ? WHERE id = ?",
                [(at, i) for at, i, _ in self.cancels_done],
            )
        if self.stats:
            conn.executemany(
                "INSERT INTO stats VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (spec, capability) "
                "DO UPDATE SET successes = excluded.successes, failures = excluded.failures, "
                "durations = excluded.durations, mean_duration_s = excluded.mean_duration_s, "
                "costs = excluded.costs, mean_cost_usd = excluded.mean_cost_usd, "
                "repeats = excluded.repeats, repeat_successes = excluded.repeat_successes, "
                "repeat_expected = excluded.repeat_expected",
                [(s, c, a.successes, a.failures, a.durations, a.mean_duration_s, a.costs,
                  a.mean_cost_usd, a.repeats, a.repeat_successes, a.repeat_expected)
                 for (s, c), a in self.stats.items()],
            )  # fmt: skip


def set_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Put the file in WAL mode. Retried for up to ``timeout_s``: SQLite does not call the busy
    handler for it while another process is converting a new file too (two starting at once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
        else:
            return


def transaction(
    conn: sqlite3.Connection,
    write: Callable[[sqlite3.Connection], None],
    label: str,
    *,
    path: Path,
    retries: int,
    retry_delay_s: float,
    fault: Callable[[str], None] | None,
) -> None:
    """Run ``write`` in one transaction, retrying transient faults; all or nothing.

    ``fault`` is called with ``label`` before each commit; the ``n``-th retry waits
    ``retry_delay_s * n`` seconds. Raises ``JournalError`` (naming ``path``) when the
    ``retries`` run out or the fault is not transient; the transaction was rolled back, so
    nothing of the batch was applied.
    """
    last: sqlite3.Error | None = None
    for attempt in range(1, retries + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                write(conn)
                if fault is not None:
                    fault(label)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if not any(t in str(exc).lower() for t in _TRANSIENT):
                raise JournalError(f"journal {path}: {exc}") from exc
            last = exc
            if attempt < retries:
                time.sleep(retry_delay_s * attempt)
            continue
        except sqlite3.Error as exc:
            raise JournalError(f"journal {path}: {exc} (nothing was applied)") from exc
        return
    raise JournalError(
        f"journal {path}: gave up after {retries} tries: {last} (nothing of this batch was applied)"
    ) from last
