"""The default journal: one SQLite file in WAL mode, written by group commit.

Writes are buffered in memory and applied by ``flush`` in a single transaction, so durability
costs one commit per batch rather than per row. With ``durability="normal"`` (WAL,
``synchronous=NORMAL``) a committed batch survives any crash of the process; ``"full"``
(``synchronous=FULL``) also survives power loss, at the price of an fsync per commit.
Transient faults ("database is locked", disk I/O errors) are retried a bounded number of times;
the transaction is rolled back between tries, so nothing is applied twice. The batch and its
transaction are in ``sqlite_write``, reading runs back in ``sqlite_read``.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.core.learning import ArmStats
from metaagent.journal.base import Durability, JournalError, KnownRun
from metaagent.journal.codec import dumps, task_row, tasks_doc
from metaagent.journal.leases import LEASE_TTL_S, Lease, Owner, lost_message
from metaagent.journal.migrations import migrate
from metaagent.journal.sqlite_admin import collect, pending_cancels, record_cancel
from metaagent.journal.sqlite_lease import Fenced, fence, give_up, read_lease, read_leases, take
from metaagent.journal.sqlite_read import RunReader
from metaagent.journal.sqlite_write import Batch, set_wal, transaction

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from metaagent.core.decisions import Decision
    from metaagent.core.tasks import AgentTask, Attempt, TaskState
    from metaagent.journal.base import CancelRequest, Collected, RunInfo, StoredRun

DEFAULT_PATH = Path(".metaagent") / "metaagent.db"


class SqliteJournal:
    """A journal in one SQLite file (created with its directory if missing).

    ``fault`` is a hook called with a label before each write transaction commits; tests use it
    to inject failures. ``retries`` bounds the attempts at one flush. ``wall`` is the wall
    clock of the leases (seconds since the epoch), replaceable in tests.

    Leases are held per connection: this object fences its flushes by the leases taken
    through it (see ``Journal``); a second ``SqliteJournal`` on the same file is another
    connection, as another process is.

    It is ``blocking``: a running orchestrator uses it from its writer thread only (and from
    the loop while that thread is idle). One object is not for two threads at once.
    """

    blocking = True

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        durability: Durability = "normal",
        retries: int = 5,
        retry_delay_s: float = 0.02,
        busy_timeout_ms: int = 2000,
        fault: Callable[[str], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', got {durability!r}")
        if retries < 1:
            raise ValueError(f"retries must be at least 1, got {retries}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.durability: Durability = durability
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._fault = fault
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        set_wal(self._conn, busy_timeout_ms / 1000)
        self._conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
        self.schema_version = migrate(self._conn)
        self._batch = Batch()
        self._decision_seq: dict[str, int] = {}
        self.commits = 0
        self._closed = False
        self._wall = wall
        self._held: dict[str, Owner] = {}  # the leases taken through this connection
        self._lost: dict[str, Lease | None] = {}  # taken over (or released): never written
        self._done: set[str] = set()  # finished here: their lease was released with the end

    # --- writing ------------------------------------------------------------------------------

    def open_run(
        self,
        run_id: str,
        name: str,
        tasks: Sequence[AgentTask],
        *,
        key: str | None = None,
        source: str | None = None,
        workdir: str | None = None,
        owner: Owner | None = None,
    ) -> None:
        rows = [task_row(run_id, i, t) for i, t in enumerate(tasks)]
        doc = tasks_doc(tasks)

        def write(conn: sqlite3.Connection) -> None:
            # Inside the transaction: of two processes opening one workflow at once, one wins.
            found = None if key is None else _unfinished(conn, key)
            if found is not None:
                raise KnownRun(f"run {found!r} has this key and is not finished", run_id=found)
            conn.execute(
                "INSERT INTO runs (run_id, name, key, created_at, source, workdir)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, name, key, time.time(), source, workdir),
            )
            conn.executemany("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            conn.execute("INSERT INTO run_tasks VALUES (?, ?)", (run_id, doc))
            if owner is not None:
                take(conn, run_id, owner, self._wall(), LEASE_TTL_S)

        self.flush()
        try:
            self._transaction(write, "open_run")
        except KnownRun:
            raise
        except JournalError as exc:
            keys = [t.key for t in tasks if t.key is not None]
            taken = self._taken_keys(keys)
            holder_run = self._holder_of(keys) if len(keys) == len(tasks) else None
            if holder_run is not None:
                raise KnownRun(
                    f"run {holder_run!r} holds every idempotency key of this batch: "
                    f"{', '.join(keys[:10])}",
                    run_id=holder_run,
                ) from exc
            if taken:
                raise JournalError(
                    f"journal {self.path}: idempotency keys already journaled: "
                    f"{', '.join(taken[:10])}{' ...' if len(taken) > 10 else ''} "
                    "(nothing was applied)"
                ) from exc
            raise
        self._decision_seq.setdefault(run_id, 0)
        if owner is not None:
            self._hold(run_id, owner)

    def _holder_of(self, keys: list[str]) -> str | None:
        """The one run holding every key of ``keys``, if one does."""
        found = {self.find_task(k) for k in keys}
        runs = {f[0] for f in found if f is not None}
        return runs.pop() if keys and None not in found and len(runs) == 1 else None

    def _taken_keys(self, keys: list[str]) -> list[str]:
        """Keys repeated in ``keys`` or already held by a journaled task."""
        taken = {k for k, n in Counter(keys).items() if n > 1}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(f"SELECT key FROM tasks WHERE key IN ({marks})", chunk)
            taken.update(k for (k,) in rows)
        return sorted(taken)

    def add_tasks(self, run_id: str, tasks: Sequence[AgentTask]) -> None:
        self._batch.subtasks.append((run_id, tasks_doc(tasks)))

    def attempt_started(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        self._batch.attempts_new.append(
            (run_id, task_id, attempt.number, attempt.agent, attempt.agent_instance,
             attempt.started_at)
        )  # fmt: skip

    def attempt_finished(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        self._batch.attempts_done.append(
            (attempt.finished_at, None if attempt.outcome is None else attempt.outcome.value,
             attempt.error, run_id, task_id, attempt.number, attempt.log,
             None if attempt.usage is None else dumps(attempt.usage.to_json()))
        )  # fmt: skip

    def task_finished(
        self, run_id: str, task_id: str, state: TaskState, output: object, error: str | None,
        at: float,
    ) -> None:  # fmt: skip
        self._batch.results.append((run_id, task_id, state.value, dumps(output), error, at))

    def decision(self, run_id: str, decision: Decision, at: float) -> None:
        seq = self._decision_seq.get(run_id)
        if seq is None:
            seq = self._next_decision_seq(run_id)
        self._decision_seq[run_id] = seq + 1
        data = decision.to_json()
        data["at"] = at
        self._batch.decisions.append(
            (run_id, seq, decision.type, decision.task_id, decision.agent, at, decision.reason,
             dumps(data))
        )  # fmt: skip

    def run_finished(self, run_id: str) -> None:
        self._batch.finished_runs.append((time.time(), run_id))

    def save_stats(self, stats: Iterable[tuple[str, str, ArmStats]]) -> None:
        for spec, cap, arm in stats:
            self._batch.stats[(spec, cap)] = ArmStats(
                arm.successes, arm.failures, arm.durations, arm.mean_duration_s, arm.costs,
                arm.mean_cost_usd, arm.repeats, arm.repeat_successes, arm.repeat_expected,
            )  # fmt: skip

    @property
    def pending(self) -> int:
        """Rows written but not yet flushed."""
        return len(self._batch)

    def flush(self) -> None:
        """Write the batch in one transaction, fenced: it renews the lease of every run it
        writes (one statement) and, if one was taken over, writes nothing and raises
        ``JournalError`` naming the new owner; that run's rows are dropped, never written.
        A run written without a lease taken here (direct use of a journal) is written only
        while nobody holds its lease. A batch that failed otherwise stays pending."""
        batch = self._batch
        write = self.detach()
        if write is None:
            return
        try:
            write()
        except JournalError:
            batch.extend(self._batch)  # rows recorded meanwhile come after the failed ones
            self._batch = batch
            if self._lost:
                batch.drop(set(self._lost))
            raise

    def detach(self) -> Callable[[], None] | None:
        """``flush`` in two steps: take the batch now (this thread), write it later (any one
        thread at a time; the next ``detach`` only after that write has returned)."""
        batch = self._batch
        if not batch:
            return None
        runs = batch.run_ids()
        self._refuse_lost(runs)
        held = [(r, self._held[r].id) for r in runs if r in self._held]
        free = [r for r in runs if r not in self._held and r not in self._done]
        ends = [(r, self._held[r].id) for _, r in batch.finished_runs if r in self._held]
        self._batch = Batch()

        def write_rows(conn: sqlite3.Connection) -> None:
            fence(conn, held, free, self._wall(), LEASE_TTL_S)
            batch.apply(conn)
            give_up(conn, ends)

        def write() -> None:
            self._fenced(write_rows, "flush", batch)
            for r, _ in ends:
                del self._held[r]
                self._done.add(r)

        return write

    # --- leases -------------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: Owner) -> Lease:
        got: list[Lease] = []

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise KeyError(f"no run {run_id!r} in the journal {self.path}")
            got.append(take(conn, run_id, owner, self._wall(), LEASE_TTL_S))

        self._transaction(write, "acquire")
        self._hold(run_id, owner)
        # Now, not at the run's first decision: that may come while another thread writes.
        self._decision_seq[run_id] = self._next_decision_seq(run_id)
        return got[0]

    def renew(self, owner: Owner) -> None:
        held = [(r, o.id) for r, o in self._held.items() if o.id == owner.id]
        if held:
            self._fenced(lambda conn: fence(conn, held, (), self._wall(), LEASE_TTL_S), "renew")

    def release(self, owner: Owner, run_id: str | None = None) -> None:
        self.flush()
        mine = [
            (r, o.id) for r, o in self._held.items()
            if o.id == owner.id and run_id in (None, r)
        ]  # fmt: skip
        if mine:
            self._transaction(lambda conn: give_up(conn, mine), "release")
        for r, _ in mine:
            del self._held[r]
            self._lost[r] = None

    def lease(self, run_id: str) -> Lease | None:
        return read_lease(self._conn, run_id)

    def leases(self) -> list[Lease]:
        return read_leases(self._conn)

    def _hold(self, run_id: str, owner: Owner) -> None:
        self._held[run_id] = owner
        self._lost.pop(run_id, None)
        self._done.discard(run_id)

    def _fenced(
        self,
        write: Callable[[sqlite3.Connection], None],
        label: str,
        batch: Batch | None = None,
    ) -> None:
        """``_transaction``, turning a fenced write into the loss of those runs' leases (their
        rows of ``batch`` dropped)."""
        try:
            self._transaction(write, label)
        except Fenced as exc:
            for r in exc.runs:
                self._held.pop(r, None)
                self._lost[r] = read_lease(self._conn, r)
            self._refuse_lost(set(exc.runs), batch)

    def _refuse_lost(self, runs: set[str], batch: Batch | None = None) -> None:
        """Raise ``JournalError`` if the batch writes runs whose lease was lost (or given up)
        here, dropping their rows: they are never written."""
        lost = {r for r in runs if r in self._lost}
        if not lost:
            return
        (self._batch if batch is None else batch).drop(lost)
        now = self._wall()
        raise JournalError(
            f"journal {self.path}: "
            + "; ".join(lost_message(r, self._lost.get(r), now) for r in sorted(lost))
        )

    def _transaction(self, write: Callable[[sqlite3.Connection], None], label: str) -> None:
        """Run ``write`` in one transaction, retrying transient faults; all or nothing.

        Raises ``JournalError`` when the retries run out or the fault is not transient; the
        transaction was rolled back, so nothing of the batch was applied.
        """
        transaction(
            self._conn, write, label,
            path=self.path, retries=self.retries, retry_delay_s=self.retry_delay_s,
            fault=self._fault,
        )  # fmt: skip
        self.commits += 1

    def _next_decision_seq(self, run_id: str) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM decisions WHERE run_id = ?", (run_id,)
        ).fetchone()
        pending = sum(1 for d in self._batch.decisions if d[0] == run_id)
        return int(row[0]) + pending

    # --- reading ------------------------------------------------------------------------------

    def load_stats(self) -> list[tuple[str, str, ArmStats]]:
        rows = self._conn.execute(
            "SELECT spec, capability, successes, failures, durations, mean_duration_s, costs, "
            "mean_cost_usd, repeats, repeat_successes, repeat_expected FROM stats"
        ).fetchall()
        return [(s, c, ArmStats(*arm)) for s, c, *arm in rows]

    def find_unfinished(self, key: str) -> str | None:
        return _unfinished(self._conn, key)

    def find_task(self, key: str) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT run_id, task_id FROM tasks WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def load_run(self, run_id: str, *, decisions: bool = True, lazy: bool = False) -> StoredRun:
        self.flush()
        return RunReader(self._conn, run_id).load(decisions=decisions, lazy=lazy)

    def output_of(self, run_id: str, task_id: str) -> object:
        """The recorded output of a task that succeeded (``KeyError`` if none is recorded)."""
        return RunReader(self._conn, run_id).output_of(task_id)

    def list_runs(self, limit: int = 50) -> list[RunInfo]:
        self.flush()
        ids = [
            r[0]
            for r in self._conn.execute(
                "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
            )
        ]
        return [RunReader(self._conn, rid).info() for rid in ids]

    # --- operating on runs from outside (``sqlite_admin``) -----------------------------------

    def record_override(self, run_id: str, what: str) -> None:
        now = self._wall()

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise KeyError(f"no run {run_id!r} in the journal {self.path}")
            conn.execute("INSERT INTO run_overrides VALUES (?, ?, ?)", (run_id, now, what))

        self._transaction(write, "override")

    def request_cancel(self, run_id: str, task_ids: Sequence[str] | None = None) -> None:
        now = self._wall()
        self._transaction(lambda conn: record_cancel(conn, run_id, task_ids, now), "cancel")

    def cancel_requests(self, run_ids: Collection[str]) -> list[CancelRequest]:
        try:
            return pending_cancels(self._conn, run_ids)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc

    def cancel_done(self, requests: Sequence[CancelRequest]) -> None:
        now = self._wall()
        self._batch.cancels_done.extend((now, r.id, r.run_id) for r in requests)

    def delete_finished(
        self, older_than_s: float, *, now: float | None = None, dry_run: bool = False
    ) -> Collected:
        cutoff = (self._wall() if now is None else now) - older_than_s
        self.flush()
        if dry_run:
            return collect(self._conn, cutoff, dry_run=True)
        done: list[Collected] = []
        self._transaction(lambda conn: done.append(collect(conn, cutoff, dry_run=False)), "gc")
        return done[0]

    def integrity_check(self) -> str:
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        """Flush what is pending and close the file; raises ``JournalError`` if the flush
        fails (the file is closed all the same). Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            held = list(self._held.items())
            if held:
                self._transaction(lambda conn: give_up(conn, [(r, o.id) for r, o in held]), "close")
        finally:
            self._conn.close()


def _unfinished(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute(
        "SELECT run_id FROM runs WHERE key = ? AND finished_at IS NULL"
        " ORDER BY created_at DESC LIMIT 1",
        (key,),
    ).fetchone()
    return None if row is None else str(row[0])
