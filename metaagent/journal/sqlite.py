"""The default journal: one SQLite file in WAL mode, written by group commit.

Writes are buffered in memory and applied by ``flush`` in a single transaction, so durability
costs one commit per batch rather than per row. With ``durability="normal"`` (WAL,
``synchronous=NORMAL``) a committed batch survives any crash of the process; ``"full"``
(``synchronous=FULL``) also survives power loss, at the price of an fsync per commit.
Transient faults ("database is locked", disk I/O errors) are retried a bounded number of times;
the transaction is rolled back between tries, so nothing is applied twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaagent import crashpoints
from metaagent.core.learning import ArmStats
from metaagent.gcpause import paused_gc
from metaagent.journal.base import (
    DeferredPart,
    Durability,
    JournalError,
    RunInfo,
    StoredResult,
    StoredRun,
    in_decomposition,
    settled,
)
from metaagent.journal.codec import (
    TASK_COLUMNS,
    attempts_from_rows,
    bulk_loads,
    dumps,
    loads,
    results_from_rows,
    task_row,
    tasks_doc,
    tasks_from_list,
    tasks_from_rows,
)
from metaagent.journal.migrations import migrate

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

    from metaagent.core.decisions import Decision
    from metaagent.core.tasks import AgentTask, Attempt, TaskState

DEFAULT_PATH = Path(".metaagent") / "metaagent.db"


_TRANSIENT = ("database is locked", "database is busy", "disk i/o error", "unable to open")


class SqliteJournal:
    """A journal in one SQLite file (created with its directory if missing).

    ``fault`` is a hook called with a label before each write transaction commits; tests use it
    to inject failures. ``retries`` bounds the attempts at one flush.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        durability: Durability = "normal",
        retries: int = 5,
        retry_delay_s: float = 0.02,
        busy_timeout_ms: int = 2000,
        fault: Callable[[str], None] | None = None,
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
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
        self.schema_version = migrate(self._conn)
        self._attempts_new: list[tuple[object, ...]] = []
        self._attempts_done: list[tuple[object, ...]] = []
        self._results: list[tuple[object, ...]] = []
        self._decisions: list[tuple[object, ...]] = []
        self._finished_runs: list[tuple[float, str]] = []
        self._stats: dict[tuple[str, str], ArmStats] = {}
        self._subtasks: list[tuple[str, str]] = []  # (run, JSON list of sub-tasks)
        self._decision_seq: dict[str, int] = {}
        self.commits = 0
        self._closed = False

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
    ) -> None:
        rows = [task_row(run_id, i, t) for i, t in enumerate(tasks)]
        doc = tasks_doc(tasks)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (run_id, name, key, created_at, source, workdir)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, name, key, time.time(), source, workdir),
            )
            conn.executemany("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            conn.execute("INSERT INTO run_tasks VALUES (?, ?)", (run_id, doc))

        self.flush()
        try:
            self._transaction(write, "open_run")
        except JournalError as exc:
            taken = self._taken_keys([t.key for t in tasks if t.key is not None])
            if taken:
                raise JournalError(
                    f"journal {self.path}: idempotency keys already journaled: "
                    f"{', '.join(taken[:10])}{' ...' if len(taken) > 10 else ''} "
                    "(nothing was applied)"
                ) from exc
            raise
        self._decision_seq.setdefault(run_id, 0)

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
        self._subtasks.append((run_id, tasks_doc(tasks)))

    def attempt_started(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        self._attempts_new.append(
            (run_id, task_id, attempt.number, attempt.agent, attempt.agent_instance,
             attempt.started_at)
        )  # fmt: skip

    def attempt_finished(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        self._attempts_done.append(
            (attempt.finished_at, None if attempt.outcome is None else attempt.outcome.value,
             attempt.error, run_id, task_id, attempt.number)
        )  # fmt: skip

    def task_finished(
        self, run_id: str, task_id: str, state: TaskState, output: object, error: str | None,
        at: float,
    ) -> None:  # fmt: skip
        self._results.append((run_id, task_id, state.value, dumps(output), error, at))

    def decision(self, run_id: str, decision: Decision, at: float) -> None:
        seq = self._decision_seq.get(run_id)
        if seq is None:
            seq = self._next_decision_seq(run_id)
        self._decision_seq[run_id] = seq + 1
        data = decision.to_json()
        data["at"] = at
        self._decisions.append(
            (run_id, seq, decision.type, decision.task_id, decision.agent, at, decision.reason,
             dumps(data))
        )  # fmt: skip

    def run_finished(self, run_id: str) -> None:
        self._finished_runs.append((time.time(), run_id))

    def save_stats(self, stats: Iterable[tuple[str, str, ArmStats]]) -> None:
        for spec, cap, arm in stats:
            self._stats[(spec, cap)] = ArmStats(
                arm.successes, arm.failures, arm.durations, arm.mean_duration_s
            )

    @property
    def pending(self) -> int:
        """Rows written but not yet flushed."""
        return (
            len(self._attempts_new) + len(self._attempts_done) + len(self._results)
            + len(self._decisions) + len(self._finished_runs) + len(self._stats)
            + len(self._subtasks)
        )  # fmt: skip

    def flush(self) -> None:
        if not self.pending:
            return
        new, done, results = self._attempts_new, self._attempts_done, self._results
        decisions, finished, stats = self._decisions, self._finished_runs, self._stats
        subtasks = self._subtasks

        def write(conn: sqlite3.Connection) -> None:
            if new:
                conn.executemany(
                    "INSERT INTO attempts (run_id, task_id, number, agent, instance, started_at)"
                    " VALUES (?,?,?,?,?,?)",
                    new,
                )
            if done:
                conn.executemany(
                    "UPDATE attempts SET finished_at = ?, outcome = ?, error = ?"
                    " WHERE run_id = ? AND task_id = ? AND number = ?",
                    done,
                )
            crashpoints.hit("inside_transaction")
            if subtasks:
                for run_id, doc in subtasks:
                    conn.execute(
                        "INSERT INTO run_subtasks VALUES (?, (SELECT COALESCE(MAX(seq) + 1, 0)"
                        " FROM run_subtasks WHERE run_id = ?), ?)",
                        (run_id, run_id, doc),
                    )
            if results:
                conn.executemany("INSERT INTO results VALUES (?,?,?,?,?,?)", results)
            if decisions:
                conn.executemany("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?)", decisions)
            if finished:
                conn.executemany(
                    "UPDATE runs SET finished_at = ? WHERE run_id = ? AND finished_at IS NULL",
                    finished,
                )
            if stats:
                conn.executemany(
                    "INSERT INTO stats VALUES (?,?,?,?,?,?) ON CONFLICT (spec, capability) DO "
                    "UPDATE SET successes = excluded.successes, failures = excluded.failures, "
                    "durations = excluded.durations, mean_duration_s = excluded.mean_duration_s",
                    [(s, c, a.successes, a.failures, a.durations, a.mean_duration_s)
                     for (s, c), a in stats.items()],
                )  # fmt: skip

        self._transaction(write, "flush")
        self._attempts_new, self._attempts_done, self._results = [], [], []
        self._decisions, self._finished_runs, self._stats = [], [], {}
        self._subtasks = []

    def _transaction(self, write: Callable[[sqlite3.Connection], None], label: str) -> None:
        """Run ``write`` in one transaction, retrying transient faults; all or nothing.

        Raises ``JournalError`` when the retries run out or the fault is not transient; the
        transaction was rolled back, so nothing of the batch was applied.
        """
        conn = self._conn
        last: sqlite3.Error | None = None
        for attempt in range(1, self.retries + 1):
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    write(conn)
                    if self._fault is not None:
                        self._fault(label)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if not any(t in str(exc).lower() for t in _TRANSIENT):
                    raise JournalError(f"journal {self.path}: {exc}") from exc
                last = exc
                if attempt < self.retries:
                    time.sleep(self.retry_delay_s * attempt)
                continue
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path}: {exc} (nothing was applied)") from exc
            self.commits += 1
            return
        raise JournalError(
            f"journal {self.path}: gave up after {self.retries} tries: {last} "
            "(nothing of this batch was applied)"
        ) from last

    def _next_decision_seq(self, run_id: str) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM decisions WHERE run_id = ?", (run_id,)
        ).fetchone()
        pending = sum(1 for d in self._decisions if d[0] == run_id)
        return int(row[0]) + pending

    # --- reading ------------------------------------------------------------------------------

    def load_stats(self) -> list[tuple[str, str, ArmStats]]:
        rows = self._conn.execute(
            "SELECT spec, capability, successes, failures, durations, mean_duration_s FROM stats"
        ).fetchall()
        return [(s, c, ArmStats(ok, bad, n, mean)) for s, c, ok, bad, n, mean in rows]

    def find_unfinished(self, key: str) -> str | None:
        row = self._conn.execute(
            "SELECT run_id FROM runs WHERE key = ? AND finished_at IS NULL"
            " ORDER BY created_at DESC LIMIT 1",
            (key,),
        ).fetchone()
        return None if row is None else str(row[0])

    def find_task(self, key: str) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT run_id, task_id FROM tasks WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def load_run(self, run_id: str, *, decisions: bool = True, lazy: bool = False) -> StoredRun:
        self.flush()
        conn = self._conn
        with paused_gc():
            docs = self._task_docs(run_id)
            if lazy and docs is not None:
                return self._load_open(run_id, docs)
            info = self._info(run_id)
            if docs is not None:
                tasks = tasks_from_list(docs)
            else:  # journaled before schema version 3
                tasks = tasks_from_rows(
                    conn.execute(
                        f"SELECT {TASK_COLUMNS} FROM tasks WHERE run_id = ? ORDER BY seq",
                        (run_id,),
                    ).fetchall()
                )
            results = results_from_rows(
                conn.execute(
                    "SELECT task_id, state, output, error, finished_at FROM results"
                    " WHERE run_id = ?",
                    (run_id,),
                ).fetchall()
            )
            attempts = attempts_from_rows(
                conn.execute(
                    "SELECT task_id, number, agent, instance, started_at, finished_at, outcome,"
                    " error FROM attempts WHERE run_id = ? ORDER BY task_id, number",
                    (run_id,),
                )
            )
            made = []
            if decisions:
                sql = "SELECT data FROM decisions WHERE run_id = ? ORDER BY seq"
                made = bulk_loads([d for (d,) in conn.execute(sql, (run_id,))])
        return StoredRun(info, tasks, results, attempts, made)  # type: ignore[arg-type]

    def _task_docs(self, run_id: str) -> list[dict[str, Any]] | None:
        """The run's tasks as decoded documents, sub-tasks last; None for a file journaled
        before schema version 3 (its tasks are only in rows)."""
        conn = self._conn
        doc = conn.execute("SELECT tasks FROM run_tasks WHERE run_id = ?", (run_id,)).fetchone()
        if doc is None:
            return None
        docs: list[dict[str, Any]] = json.loads(doc[0])
        for (more,) in conn.execute(
            "SELECT tasks FROM run_subtasks WHERE run_id = ? ORDER BY seq", (run_id,)
        ):
            docs.extend(json.loads(more))
        return docs

    def _load_open(self, run_id: str, docs: list[dict[str, Any]]) -> StoredRun:
        """The lazy read: every task but the settled ones, in full; those by id only.

        Reading a settled task's result, attempts and fields costs as much as all the rest of
        resuming, and none of it is needed to dispatch again.
        """
        conn = self._conn
        rows = conn.execute(
            "SELECT task_id, state, finished_at FROM results WHERE run_id = ?", (run_id,)
        ).fetchall()
        states = {tid: state for tid, state, _ in rows}
        info = self._info(run_id, Counter(states.values()))
        kept: list[dict[str, Any]] = []
        later: list[dict[str, Any]] = []
        for d in docs:
            state = states.get(d["id"])
            if state is None:
                kept.append(d)
            elif (state == "succeeded" and "decompose" not in d and "metadata" not in d) or settled(
                state, d.get("decompose"), d.get("metadata")
            ):  # (the common case first)
                later.append(d)
            else:
                kept.append(d)
        order = [d["id"] for d in docs]
        left = {d["id"] for d in later}
        unsettled = [tid for tid, state in states.items() if state != "succeeded"]
        results = self._results_of(run_id, unsettled) if unsettled else {}
        # Every attempt of a task that has not succeeded (in flight, failed, lost), then all of
        # a decomposed task's or a sub-task's (there are few of those).
        attempts = attempts_from_rows(
            conn.execute(
                "SELECT task_id, number, agent, instance, started_at, finished_at, outcome,"
                " error FROM attempts WHERE run_id = ? AND outcome IS NOT 'succeeded'"
                " ORDER BY task_id, number",
                (run_id,),
            )
        )
        for tid in [tid for tid in attempts if tid in left]:
            del attempts[tid]
        family = [
            d["id"]
            for d in kept
            if ("decompose" in d or "metadata" in d)  # most tasks have neither: no call
            and in_decomposition(d.get("decompose"), d.get("metadata"))
        ]
        if family:
            attempts.update(self._attempts_of(run_id, family))
            done = [tid for tid in family if states.get(tid) == "succeeded"]
            results.update(self._results_of(run_id, done))
        last_at = max(
            [max((at for _, _, at in rows), default=0.0)]
            + [a.finished_at or a.started_at for seen in attempts.values() for a in seen]
        )

        def read() -> StoredRun:
            with paused_gc():
                return StoredRun(
                    info, tasks_from_list(later), self._results_of(run_id, left),
                    self._attempts_of(run_id, left),
                )  # fmt: skip

        deferred = DeferredPart(_Outputs(self, run_id, left), order, last_at, read)
        return StoredRun(info, tasks_from_list(kept), results, attempts, [], deferred)

    def _results_of(self, run_id: str, ids: Collection[str]) -> dict[str, StoredResult]:
        """The results of the named tasks (all of the run's when they are most of them)."""
        rows = self._rows_of(
            "SELECT task_id, state, output, error, finished_at FROM results WHERE run_id = ?",
            run_id,
            ids,
        )
        return results_from_rows(rows)

    def _attempts_of(self, run_id: str, ids: Collection[str]) -> dict[str, list[Attempt]]:
        rows = self._rows_of(
            "SELECT task_id, number, agent, instance, started_at, finished_at, outcome, error"
            " FROM attempts WHERE run_id = ?",
            run_id,
            ids,
            order=" ORDER BY task_id, number",
        )
        return attempts_from_rows(rows)

    def _rows_of(
        self, sql: str, run_id: str, ids: Collection[str], *, order: str = ""
    ) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (which selects task_id first) for the tasks in ``ids`` only: by one
        scan of the run filtered here when they are many, else by look-ups in chunks."""
        conn = self._conn
        if len(ids) > 500:
            wanted = ids if isinstance(ids, (set, frozenset)) else set(ids)
            rows = conn.execute(sql + order, (run_id,)).fetchall()
            return [r for r in rows if r[0] in wanted]
        out: list[tuple[Any, ...]] = []
        listed = sorted(ids)
        for i in range(0, len(listed), 250):
            chunk = listed[i : i + 250]
            marks = ",".join("?" * len(chunk))
            out.extend(conn.execute(f"{sql} AND task_id IN ({marks}){order}", (run_id, *chunk)))
        if order:
            out.sort(key=lambda r: (r[0], r[1]))
        return out

    def output_of(self, run_id: str, task_id: str) -> object:
        """The recorded output of a task that succeeded (``KeyError`` if none is recorded)."""
        row = self._conn.execute(
            "SELECT output FROM results WHERE run_id = ? AND task_id = ? AND state = 'succeeded'",
            (run_id, task_id),
        ).fetchone()
        if row is None:
            raise KeyError(task_id)
        return loads(row[0])

    def _info(self, run_id: str, counts: Mapping[str, int] | None = None) -> RunInfo:
        """The run's row; ``counts`` (terminal states by name) when the caller has them."""
        row = self._conn.execute(
            "SELECT run_id, name, key, created_at, finished_at,"
            " (SELECT COUNT(*) FROM tasks t WHERE t.run_id = r.run_id), source, workdir"
            " FROM runs r WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise KeyError(run_id)
        if counts is None:
            counts = dict(
                self._conn.execute(
                    "SELECT state, COUNT(*) FROM results WHERE run_id = ? GROUP BY state",
                    (run_id,),
                ).fetchall()
            )
        return RunInfo(row[0], row[1], row[2], row[3], row[4], row[5], dict(counts), row[6], row[7])

    def list_runs(self, limit: int = 50) -> list[RunInfo]:
        self.flush()
        ids = [
            r[0]
            for r in self._conn.execute(
                "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
            )
        ]
        return [self._info(rid) for rid in ids]

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
        finally:
            self._conn.close()


class _Outputs(Mapping[str, object]):
    """Outputs of a run's settled tasks, read from the journal when a dependent asks for one:
    resuming never waits for the outputs of tasks whose dependents are not about to start."""

    __slots__ = ("_ids", "_journal", "_run_id", "_seen")

    def __init__(self, journal: SqliteJournal, run_id: str, ids: set[str]) -> None:
        self._journal = journal
        self._run_id = run_id
        self._ids = ids
        self._seen: dict[str, object] = {}

    def __getitem__(self, task_id: str) -> object:
        if task_id not in self._ids:
            raise KeyError(task_id)
        try:
            return self._seen[task_id]
        except KeyError:
            value = self._seen[task_id] = self._journal.output_of(self._run_id, task_id)
            return value

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
