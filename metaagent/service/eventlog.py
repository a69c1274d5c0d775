"""The service's event log: every event stored with its ``seq`` before any client sees it.

Events are appended on the event loop; a writer thread stores them in an SQLite file of their
own beside the journal (``<journal>-events``: storing them never holds the journal's write
lock), one transaction per batch, ``seq`` from SQLite's AUTOINCREMENT (per journal, +1 per
event, never reused), and hands each stored batch back to the loop, where it is fanned out
to the subscribers in ``seq`` order. A client that reconnects reads what it missed from the
table (``read``) and then goes on live, so it sees every event exactly once.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

__all__ = ["Chunk", "EventLog", "Subscriber"]

_BUSY_MS = 10_000
_RETRIES = 5
MAX_BACKLOG = 10_000
"""Events queued for one subscriber at most; past it the subscriber is dropped (it reconnects
with its last seq and loses nothing)."""
_PAGE = 2_000
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  TEXT,                         -- NULL: a pool decision of no run
        type    TEXT NOT NULL,
        ts      REAL NOT NULL,
        data    TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id, seq)",
)


class Chunk(NamedTuple):
    """Events in ``seq`` order, with their JSON lines joined once for every client."""

    first: int
    last: int
    items: list[tuple[int, str]]  # (seq, the event as JSON)
    text: str  # the lines joined by commas: the inside of a JSON array


def chunk_of(items: list[tuple[int, str]]) -> Chunk:
    return Chunk(items[0][0], items[-1][0], items, ",".join(line for _, line in items))


class Subscriber:
    """One client's live feed: chunks of stored events queued in ``seq`` order."""

    __slots__ = ("_wake", "closed", "last_seq", "overflowed", "pending", "queued", "run_id")

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.pending: deque[Chunk] = deque()
        self.queued = 0  # events in ``pending``
        self.last_seq = 0  # the last seq handed to the client: later ones only
        self.closed = False
        self.overflowed = False
        self._wake = asyncio.Event()

    def offer(self, chunk: Chunk) -> None:
        if self.closed:
            return
        self.pending.append(chunk)
        self.queued += len(chunk.items)
        if self.queued > MAX_BACKLOG:
            self.overflowed = True
            self.close()
        else:
            self._wake.set()

    def drop_through(self, seq: int) -> None:
        """Forget the queued events up to ``seq`` (the client got them another way)."""
        while self.pending and self.pending[0].last <= seq:
            self.queued -= len(self.pending.popleft().items)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next_batch(self, timeout_s: float | None = None) -> list[Chunk]:
        """The events queued since the last call, after ``last_seq`` (waiting for one);
        empty when closed or after ``timeout_s``."""
        while not self.pending and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_s)
            except TimeoutError:
                return []
        out: list[Chunk] = []
        last = self.last_seq
        while self.pending:
            c = self.pending.popleft()
            self.queued -= len(c.items)
            if c.last <= last:
                continue
            if c.first <= last:  # overlaps what the client already has: the rest of it
                c = chunk_of([item for item in c.items if item[0] > last])
            out.append(c)
            last = c.last
        self.last_seq = last
        return out


def event_line(seq: int, data: str) -> str:
    """The event as clients get it: ``{"seq": N, ...the stored fields}``."""
    return f'{{"seq":{seq},{data[1:]}' if len(data) > 2 else f'{{"seq":{seq}}}'


class EventLog:
    """Stores events in ``path`` (a journal file) and fans them out once stored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[str | None, str, float, str]] = []
        self._scheduled = False
        self._queue: queue.Queue[list[tuple[str | None, str, float, str]] | None] = queue.Queue()
        self._subs: set[Subscriber] = set()
        self._head = 0
        self.stored = 0  # events stored by this process
        self.failure: BaseException | None = None
        self._reader = self._connect()
        self._reader.execute("PRAGMA journal_mode = WAL")
        for statement in _SCHEMA:
            self._reader.execute(statement)
        self._read_lock = threading.Lock()
        self._head = self._max_seq(self._reader)
        self._thread = threading.Thread(target=self._write_loop, name="event-log", daemon=True)
        self._idle = threading.Event()
        self._idle.set()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @staticmethod
    def _max_seq(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def start(self) -> None:
        """Start the writer; events appended from here on are stored and published."""
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    @property
    def head(self) -> int:
        """The largest seq stored and published."""
        return self._head

    # --- appending (on the loop) -----------------------------------------------------------

    def append(self, event: dict[str, object]) -> None:
        """Queue ``event`` (JSON-able, with ``type`` and ``run_id``, None for a pool decision
        that belongs to no run) to be stored and sent."""
        ts = time.time()
        event["ts"] = ts
        data = json.dumps(event, separators=(",", ":"), default=str)
        rid = event["run_id"]
        self._pending.append((None if rid is None else str(rid), str(event["type"]), ts, data))
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            self._idle.clear()
            self._queue.put(batch)

    # --- the writer thread -----------------------------------------------------------------

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                while True:  # what else is waiting goes into the same transaction
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)
                        break
                    batch.extend(more)
                stored = self._store(conn, batch)
                if stored and self._loop is not None and not self._loop.is_closed():
                    try:
                        self._loop.call_soon_threadsafe(self._publish, stored)
                    except RuntimeError:  # the loop closed meanwhile
                        return
                if self._queue.empty():
                    self._idle.set()
        finally:
            conn.close()
            self._idle.set()

    def _store(
        self, conn: sqlite3.Connection, batch: list[tuple[str | None, str, float, str]]
    ) -> list[tuple[int, str | None, str]]:
        for attempt in range(_RETRIES):
            try:
                conn.execute("BEGIN IMMEDIATE")
                out: list[tuple[int, str | None, str]] = []
                cur = conn.cursor()
                for run_id, kind, ts, data in batch:
                    cur.execute(
                        "INSERT INTO events (run_id, type, ts, data) VALUES (?, ?, ?, ?)",
                        (run_id, kind, ts, data),
                    )
                    seq = int(cur.lastrowid or 0)
                    out.append((seq, run_id, event_line(seq, data)))
                conn.execute("COMMIT")
                self.stored += len(out)
                return out
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if attempt == _RETRIES - 1:
                    self.failure = exc
                    print(f"metaagent serve: events not stored: {exc}", file=sys.stderr)
                    return []
                time.sleep(0.05 * (attempt + 1))
        return []

    def _publish(self, stored: list[tuple[int, str | None, str]]) -> None:
        self._head = stored[-1][0]
        whole: Chunk | None = None
        per_run: dict[str, Chunk | None] = {}
        for sub in list(self._subs):
            rid = sub.run_id
            if rid is None:
                whole = whole or chunk_of([(seq, line) for seq, _, line in stored])
                sub.offer(whole)
            else:
                if rid not in per_run:
                    mine = [(seq, line) for seq, r, line in stored if r == rid]
                    per_run[rid] = chunk_of(mine) if mine else None
                part = per_run[rid]
                if part is not None:
                    sub.offer(part)
            if sub.closed:
                self._subs.discard(sub)

    # --- subscribers -----------------------------------------------------------------------

    def subscribe(self, run_id: str | None) -> Subscriber:
        """A live feed of the events stored from now on (of ``run_id``, or all)."""
        sub = Subscriber(run_id)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def read(self, after: int, run_id: str | None, limit: int = _PAGE) -> list[tuple[int, str]]:
        """Stored events with a seq above ``after`` (of ``run_id``, or all), oldest first, at
        most ``limit``. Blocking: call it in a thread."""
        if run_id is None:
            sql, args = (
                "SELECT seq, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (
                    after,
                    limit,
                ),
            )
        else:
            sql = "SELECT seq, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
            args = (run_id, after, limit)  # type: ignore[assignment]
        with self._read_lock:
            rows = self._reader.execute(sql, args).fetchall()
        return [(int(seq), event_line(int(seq), data)) for seq, data in rows]

    async def catch_up(self, sub: Subscriber, after: int) -> AsyncIterator[Chunk]:
        """What ``sub``'s client missed after ``after``: the stored events, page by page,
        oldest first, up to where its live feed takes over. Start it right after
        ``subscribe`` (before awaiting anything else), so that nothing falls between."""
        sub.last_seq = after
        while True:
            page = await asyncio.to_thread(self.read, sub.last_seq, sub.run_id)
            if page:
                sub.last_seq = page[-1][0]
                sub.drop_through(sub.last_seq)  # the live feed's copy of what the page holds
                yield chunk_of(page)
            if len(page) < _PAGE:
                return

    def prune(self, journal: Path) -> int:
        """Delete the events of runs the journal no longer has (``gc`` deleted them); how
        many. Blocking: call it in a thread, before ``start``."""
        with self._read_lock:
            conn = self._reader
            conn.execute("ATTACH DATABASE ? AS journal", (str(journal),))
            try:
                cur = conn.execute(
                    "DELETE FROM events WHERE run_id NOT IN (SELECT run_id FROM journal.runs)"
                )
                return cur.rowcount
            finally:
                conn.execute("DETACH DATABASE journal")

    # --- closing ---------------------------------------------------------------------------

    def drain(self, timeout_s: float = 5.0) -> None:
        """Wait until every appended event is stored (blocking)."""
        self._hand_over()
        self._idle.wait(timeout_s)

    def close(self) -> None:
        """Store what is queued, stop the writer, end every subscription."""
        self._hand_over()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(10)
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()
        with self._read_lock:
            self._reader.close()
