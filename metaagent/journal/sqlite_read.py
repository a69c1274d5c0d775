"""Reading a run back from the SQLite journal: whole, or lazily, with its settled tasks left to be
read once work is under way again (see ``DeferredPart``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metaagent.gcpause import paused_gc
from metaagent.journal.base import (
    DeferredPart,
    RunInfo,
    StoredResult,
    StoredRun,
    in_decomposition,
    settled,
)
from metaagent.journal.codec import (
    ATTEMPT_COLUMNS,
    TASK_COLUMNS,
    attempts_from_rows,
    bulk_loads,
    loads,
    results_from_rows,
    tasks_from_list,
    tasks_from_rows,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Collection, Iterator

    from metaagent.core.tasks import Attempt

_RESULTS = "SELECT task_id, state, output, error, finished_at FROM results WHERE run_id = ?"
_ATTEMPTS = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?"
_BY_ATTEMPT = " ORDER BY task_id, number"


class RunReader:
    """Reads one run of the journal's file back; ``KeyError`` for an unknown run."""

    __slots__ = ("_conn", "run_id")

    def __init__(self, conn: sqlite3.Connection, run_id: str) -> None:
        self._conn = conn
        self.run_id = run_id

    def load(self, *, decisions: bool, lazy: bool) -> StoredRun:
        """The run as ``Journal.load_run`` returns it (the journal flushes first)."""
        with paused_gc():
            docs = self.task_docs()
            if lazy and docs is not None:
                return self._load_open(docs)
            return self._load_whole(docs, decisions)

    def task_docs(self) -> list[dict[str, Any]] | None:
        """The run's tasks as decoded documents, sub-tasks last; None for a file journaled
        before schema version 3 (its tasks are only in rows)."""
        conn, run_id = self._conn, self.run_id
        doc = conn.execute("SELECT tasks FROM run_tasks WHERE run_id = ?", (run_id,)).fetchone()
        if doc is None:
            return None
        docs: list[dict[str, Any]] = json.loads(doc[0])
        for (more,) in conn.execute(
            "SELECT tasks FROM run_subtasks WHERE run_id = ? ORDER BY seq", (run_id,)
        ):
            docs.extend(json.loads(more))
        return docs

    def _load_whole(self, docs: list[dict[str, Any]] | None, decisions: bool) -> StoredRun:
        conn, run_id = self._conn, self.run_id
        info = self.info()
        if docs is not None:
            tasks = tasks_from_list(docs)
        else:  # journaled before schema version 3
            tasks = tasks_from_rows(
                conn.execute(
                    f"SELECT {TASK_COLUMNS} FROM tasks WHERE run_id = ? ORDER BY seq", (run_id,)
                ).fetchall()
            )
        results = results_from_rows(conn.execute(_RESULTS, (run_id,)).fetchall())
        attempts = attempts_from_rows(conn.execute(_ATTEMPTS + _BY_ATTEMPT, (run_id,)))
        made = []
        if decisions:
            sql = "SELECT data FROM decisions WHERE run_id = ? ORDER BY seq"
            made = bulk_loads([d for (d,) in conn.execute(sql, (run_id,))])
        return StoredRun(info, tasks, results, attempts, made)  # type: ignore[arg-type]

    def _load_open(self, docs: list[dict[str, Any]]) -> StoredRun:
        """The lazy read: every task but the settled ones, in full; those by id only.

        Reading a settled task's result, attempts and fields costs as much as all the rest of
        resuming, and none of it is needed to dispatch again.
        """
        rows = self._conn.execute(
            "SELECT task_id, state, finished_at FROM results WHERE run_id = ?", (self.run_id,)
        ).fetchall()
        states = {tid: state for tid, state, _ in rows}
        info = self.info(Counter(states.values()))
        kept, later = _split(docs, states)
        left = {d["id"] for d in later}
        results, attempts = self._unsettled(states, left)
        self._add_family(kept, states, results, attempts)
        last_at = max(
            [max((at for _, _, at in rows), default=0.0)]
            + [a.finished_at or a.started_at for seen in attempts.values() for a in seen]
        )

        def read() -> StoredRun:
            with paused_gc():
                return StoredRun(
                    info, tasks_from_list(later), self.results_of(left), self.attempts_of(left)
                )

        deferred = DeferredPart(_Outputs(self, left), [d["id"] for d in docs], last_at, read)
        return StoredRun(info, tasks_from_list(kept), results, attempts, [], deferred)

    def _unsettled(
        self, states: Mapping[str, str], left: set[str]
    ) -> tuple[dict[str, StoredResult], dict[str, list[Attempt]]]:
        """The results of the tasks that did not succeed, and every attempt of a task that has
        not succeeded (in flight, failed, lost) but the settled tasks' failed ones."""
        unsettled = [tid for tid, state in states.items() if state != "succeeded"]
        results = self.results_of(unsettled) if unsettled else {}
        attempts = attempts_from_rows(
            self._conn.execute(
                _ATTEMPTS + " AND outcome IS NOT 'succeeded'" + _BY_ATTEMPT, (self.run_id,)
            )
        )
        for tid in [tid for tid in attempts if tid in left]:
            del attempts[tid]
        return results, attempts

    def _add_family(
        self,
        kept: list[dict[str, Any]],
        states: Mapping[str, str],
        results: dict[str, StoredResult],
        attempts: dict[str, list[Attempt]],
    ) -> None:
        """Adds all the records of the decomposed tasks and sub-tasks among ``kept`` (there are
        few of those): they are relinked to each other when the run resumes."""
        family = [
            d["id"]
            for d in kept
            if ("decompose" in d or "metadata" in d)  # most tasks have neither: no call
            and in_decomposition(d.get("decompose"), d.get("metadata"))
        ]
        if family:
            attempts.update(self.attempts_of(family))
            done = [tid for tid in family if states.get(tid) == "succeeded"]
            results.update(self.results_of(done))

    def results_of(self, ids: Collection[str]) -> dict[str, StoredResult]:
        """The results of the named tasks."""
        return results_from_rows(self._rows_of(_RESULTS, ids))

    def attempts_of(self, ids: Collection[str]) -> dict[str, list[Attempt]]:
        """The attempts of the named tasks, by task."""
        return attempts_from_rows(self._rows_of(_ATTEMPTS, ids, order=_BY_ATTEMPT))

    def _rows_of(self, sql: str, ids: Collection[str], *, order: str = "") -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (which selects task_id first) for the tasks in ``ids`` only: by one
        scan of the run filtered here when they are many, else by look-ups in chunks."""
        conn, run_id = self._conn, self.run_id
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

    def output_of(self, task_id: str) -> object:
        """The recorded output of a task that succeeded (``KeyError`` if none is recorded)."""
        row = self._conn.execute(
            "SELECT output FROM results WHERE run_id = ? AND task_id = ? AND state = 'succeeded'",
            (self.run_id, task_id),
        ).fetchone()
        if row is None:
            raise KeyError(task_id)
        return loads(row[0])

    def info(self, counts: Mapping[str, int] | None = None) -> RunInfo:
        """The run's row; ``counts`` (terminal states by name) when the caller has them."""
        conn, run_id = self._conn, self.run_id
        row = conn.execute(
            "SELECT run_id, name, key, created_at, finished_at,"
            " (SELECT COUNT(*) FROM tasks t WHERE t.run_id = r.run_id), source, workdir"
            " FROM runs r WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise KeyError(run_id)
        if counts is None:
            counts = dict(
                conn.execute(
                    "SELECT state, COUNT(*) FROM results WHERE run_id = ? GROUP BY state",
                    (run_id,),
                ).fetchall()
            )
        overrides = tuple(
            str(w)
            for (w,) in conn.execute(
                "SELECT what FROM run_overrides WHERE run_id = ? ORDER BY rowid", (run_id,)
            )
        )
        return RunInfo(
            row[0], row[1], row[2], row[3], row[4], row[5], dict(counts), row[6], row[7], overrides
        )


def _split(
    docs: list[dict[str, Any]], states: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The task documents to read now, and the settled ones to leave for later."""
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
    return kept, later


class _Outputs(Mapping[str, object]):
    """Outputs of a run's settled tasks, read from the journal when a dependent asks for one:
    resuming never waits for the outputs of tasks whose dependents are not about to start."""

    __slots__ = ("_ids", "_reader", "_seen")

    def __init__(self, reader: RunReader, ids: set[str]) -> None:
        self._reader = reader
        self._ids = ids
        self._seen: dict[str, object] = {}

    def __getitem__(self, task_id: str) -> object:
        if task_id not in self._ids:
            raise KeyError(task_id)
        try:
            return self._seen[task_id]
        except KeyError:
            value = self._seen[task_id] = self._reader.output_of(task_id)
            return value

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
