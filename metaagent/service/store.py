"""What the service keeps beside the journal: the runs submitted to it (``service_runs``: the
workflow document, idempotency key, priority, labels), and the run list with its filters.

Blocking: every method is called in a worker thread (``asyncio.to_thread``); one lock guards
the connection.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ListQuery", "RunRow", "ServiceRun", "ServiceStore", "run_state"]

_BUSY_MS = 10_000
RUN_STATES = ("running", "interrupted", "succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class ServiceRun:
    """A run submitted to the service: what it needs to resume it and to list it."""

    run_id: str
    text: str  # the workflow document as submitted (YAML or JSON text)
    is_json: bool
    priority: int
    labels: dict[str, str]
    idempotency_key: str | None = None
    retry_of: str | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the list shows it."""

    run_id: str
    name: str
    created_at: float
    finished_at: float | None
    tasks: int
    counts: dict[str, int]
    labels: dict[str, str]
    priority: int
    idempotency_key: str | None
    source: str | None
    state: str
    retry_of: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id, "name": self.name, "state": self.state,
            "created_at": self.created_at, "finished_at": self.finished_at, "tasks": self.tasks,
            "counts": self.counts, "labels": self.labels, "priority": self.priority,
            "idempotency_key": self.idempotency_key, "source": self.source,
            "retry_of": self.retry_of,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The filters of ``GET /v1/runs``."""

    state: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None
    limit: int = 50
    cursor: tuple[float, str] | None = None


def run_state(finished: bool, counts: dict[str, int], leased: bool) -> str:
    """A run's state from what the journal holds of it (see docs/service.md)."""
    if not finished:
        return "running" if leased else "interrupted"
    if counts.get("failed", 0) or (counts.get("skipped", 0) and not counts.get("cancelled", 0)):
        return "failed"
    if counts.get("cancelled", 0):
        return "cancelled"
    return "succeeded"


def encode_cursor(created_at: float, run_id: str) -> str:
    raw = json.dumps([created_at, run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    """The position a cursor names; ``ValueError`` for one this server did not make."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created_at, run_id = json.loads(raw)
        if not isinstance(run_id, str) or isinstance(created_at, bool):
            raise TypeError
        return float(created_at), run_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError(f"cursor {text[:40]!r}: not a cursor of this server") from None


_LIST_SQL = """
SELECT r.run_id, r.name, r.created_at, r.finished_at, r.source,
       (SELECT count(*) FROM tasks t WHERE t.run_id = r.run_id),
       s.labels, s.priority, s.idempotency_key, s.retry_of, l.expires_at
FROM runs r
LEFT JOIN service_runs s ON s.run_id = r.run_id
LEFT JOIN leases l ON l.run_id = r.run_id
WHERE {where}
ORDER BY r.created_at DESC, r.run_id DESC
LIMIT ?
"""


class ServiceStore:
    """The service's own rows in the journal file (its tables come from the journal's
    migrations)."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- service_runs --------------------------------------------------------------------

    def add(self, run: ServiceRun) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO service_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.idempotency_key,
                    json.dumps({"text": run.text, "json": run.is_json}),
                    run.priority,
                    json.dumps(run.labels),
                    run.retry_of,
                    time.time(),
                ),
            )

    def drop(self, run_id: str) -> None:
        """Forget a submission that was refused after its row went in."""
        with self._lock:
            self._conn.execute("DELETE FROM service_runs WHERE run_id = ?", (run_id,))

    def by_key(self, key: str) -> str | None:
        """The run an idempotency key made, if it was journaled."""
        with self._lock:
            row = self._conn.execute(
                "SELECT s.run_id FROM service_runs s JOIN runs r ON r.run_id = s.run_id"
                " WHERE s.idempotency_key = ?",
                (key,),
            ).fetchone()
        return None if row is None else str(row[0])

    def get(self, run_id: str) -> ServiceRun | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT run_id, workflow, priority, labels, idempotency_key, retry_of"
                " FROM service_runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            return None
        doc = json.loads(row[1])
        return ServiceRun(
            row[0], doc["text"], bool(doc["json"]), int(row[2]), json.loads(row[3]), row[4], row[5]
        )

    def open_runs(self) -> list[tuple[str, str | None, str | None]]:
        """Unfinished runs of the journal, oldest first: (run id, source file, workdir)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT run_id, source, workdir FROM runs WHERE finished_at IS NULL"
                " ORDER BY created_at"
            ).fetchall()
        return [(str(r[0]), r[1], r[2]) for r in rows]

    def clear_orphans(self) -> None:
        """Submissions whose run was never journaled (a crash between the two writes)."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM service_runs WHERE run_id NOT IN (SELECT run_id FROM runs)"
            )

    # --- the run list --------------------------------------------------------------------

    def row(self, run_id: str) -> RunRow | None:
        with self._lock:
            rows = self._conn.execute(_LIST_SQL.format(where="r.run_id = ?"), (run_id, 1))
            found = rows.fetchall()
            return self._rows(found)[0] if found else None

    def page(self, q: ListQuery) -> tuple[list[RunRow], str | None]:
        """One page of runs, newest first, and the cursor of the next page (None: last)."""
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        if q.since is not None:
            where.append("r.created_at >= ?")
            args.append(q.since)
        if q.until is not None:
            where.append("r.created_at < ?")
            args.append(q.until)
        for k, v in q.labels.items():
            where.append(
                "EXISTS (SELECT 1 FROM json_each(s.labels) j WHERE j.key = ? AND j.value = ?)"
            )
            args += [k, v]
        found: list[RunRow] = []
        position = q.cursor
        page = max(q.limit, 50) if q.state else q.limit + 1
        while True:
            clause = list(where)
            extra: list[object] = []
            if position is not None:
                clause.append("(r.created_at, r.run_id) < (?, ?)")
                extra = [position[0], position[1]]
            sql = _LIST_SQL.format(where=" AND ".join(clause))
            with self._lock:
                raw = self._conn.execute(sql, (*args, *extra, page)).fetchall()
                rows = self._rows(raw)
            for r in rows:
                if q.state is None or r.state == q.state:
                    found.append(r)
                if len(found) > q.limit:
                    last = found[q.limit - 1]
                    return found[: q.limit], encode_cursor(last.created_at, last.run_id)
            if len(raw) < page:
                return found, None
            position = (rows[-1].created_at, rows[-1].run_id)

    def _rows(self, raw: list[tuple[Any, ...]]) -> list[RunRow]:
        ids = [str(r[0]) for r in raw]
        counts: dict[str, dict[str, int]] = {i: {} for i in ids}
        if ids:
            marks = ",".join("?" * len(ids))
            for rid, st, n in self._conn.execute(
                f"SELECT run_id, state, count(*) FROM results WHERE run_id IN ({marks})"
                " GROUP BY run_id, state",
                ids,
            ):
                counts[rid][st] = n
        now = time.time()
        out = []
        for r in raw:
            rid = str(r[0])
            finished = r[3] is not None
            leased = r[10] is not None and float(r[10]) > now
            out.append(
                RunRow(
                    rid, str(r[1]), float(r[2]), r[3], int(r[5]),
                    counts[rid], json.loads(r[6]) if r[6] else {},
                    int(r[7] or 0), r[8], r[4], run_state(finished, counts[rid], leased),
                    r[9],
                )
            )  # fmt: skip
        return out
