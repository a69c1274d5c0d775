"""The journal's schema as a versioned, append-only list of migrations.

Never edit a migration that has shipped: append a new one. ``PRAGMA user_version`` records how
far a file has come, so an old file is brought forward when it is opened.
"""

from __future__ import annotations

import sqlite3
from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: runs, tasks, attempts, terminal results and decisions.
    """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        key         TEXT,
        created_at  REAL NOT NULL,            -- wall-clock seconds since the epoch
        finished_at REAL,
        source      TEXT,                     -- the workflow file, when the run came from one
        workdir     TEXT
    );
    CREATE INDEX runs_key ON runs(key);
    CREATE TABLE tasks (
        run_id       TEXT NOT NULL REFERENCES runs(run_id),
        task_id      TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        capability   TEXT NOT NULL,
        prompt       TEXT NOT NULL,
        input        TEXT,                    -- JSON
        priority     INTEGER NOT NULL,
        depends_on   TEXT NOT NULL,           -- JSON list
        complexity   REAL NOT NULL,
        timeout_s    REAL,
        max_attempts INTEGER NOT NULL,
        resources    TEXT NOT NULL,           -- JSON list
        verify       TEXT,                    -- JSON
        metadata     TEXT,                    -- JSON
        key          TEXT,                    -- idempotency key
        PRIMARY KEY (run_id, task_id)
    );
    CREATE UNIQUE INDEX tasks_key ON tasks(key) WHERE key IS NOT NULL;
    CREATE TABLE attempts (
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        number      INTEGER NOT NULL,
        agent       TEXT NOT NULL,
        instance    TEXT NOT NULL,
        started_at  REAL NOT NULL,            -- seconds since the run started
        finished_at REAL,
        outcome     TEXT,
        error       TEXT,
        PRIMARY KEY (run_id, task_id, number)
    );
    -- A terminal state is recorded once: the key forbids a second row, the trigger an update.
    CREATE TABLE results (
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        state       TEXT NOT NULL
            CHECK (state IN ('succeeded', 'failed', 'cancelled', 'skipped')),
        output      TEXT,                     -- JSON
        error       TEXT,
        finished_at REAL NOT NULL,
        PRIMARY KEY (run_id, task_id)
    );
    CREATE TRIGGER results_are_final BEFORE UPDATE ON results
    BEGIN
        SELECT RAISE(ABORT, 'a terminal state is final');
    END;
    CREATE TRIGGER results_are_kept BEFORE DELETE ON results
    BEGIN
        SELECT RAISE(ABORT, 'a terminal state is final');
    END;
    CREATE TABLE decisions (
        run_id   TEXT NOT NULL,
        seq      INTEGER NOT NULL,
        type     TEXT NOT NULL,
        task_id  TEXT,
        agent    TEXT,
        at       REAL NOT NULL,               -- seconds since the run started
        reason   TEXT NOT NULL,
        data     TEXT NOT NULL,               -- the whole decision as JSON
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX decisions_task ON decisions(run_id, task_id);
    """,
    # 2: learned routing statistics, kept across runs.
    """
    CREATE TABLE stats (
        spec            TEXT NOT NULL,
        capability      TEXT NOT NULL,
        successes       INTEGER NOT NULL,
        failures        INTEGER NOT NULL,
        durations       INTEGER NOT NULL,
        mean_duration_s REAL NOT NULL,
        PRIMARY KEY (spec, capability)
    );
    """,
    # 3: each run's tasks also as one JSON document, read back in one piece when a run resumes
    # (the rows stay, for look-ups by key and for queries). Runs journaled before have none.
    """
    CREATE TABLE run_tasks (
        run_id  TEXT PRIMARY KEY REFERENCES runs(run_id),
        tasks   TEXT NOT NULL                 -- JSON list; fields at their defaults left out
    );
    """,
    # 4: sub-tasks added to a run when a task is decomposed, one document per expansion.
    """
    CREATE TABLE run_subtasks (
        run_id  TEXT NOT NULL REFERENCES runs(run_id),
        seq     INTEGER NOT NULL,
        tasks   TEXT NOT NULL,                -- JSON list, as in run_tasks
        PRIMARY KEY (run_id, seq)
    );
    """,
    # 5: the lease of each run being executed: one owner at a time, fencing every write.
    """
    CREATE TABLE leases (
        run_id       TEXT PRIMARY KEY REFERENCES runs(run_id),
        owner        TEXT NOT NULL,           -- random per orchestrator
        pid          INTEGER NOT NULL,
        host         TEXT NOT NULL,
        node         TEXT NOT NULL,           -- boot and pid namespace: where the pid is valid
        since        REAL NOT NULL,           -- wall-clock seconds since the epoch
        heartbeat_at REAL NOT NULL,
        expires_at   REAL NOT NULL
    );
    CREATE INDEX leases_owner ON leases(owner);
    """,
    # 6: each attempt's log: what its agent wrote besides its output (stderr, capped).
    """
    ALTER TABLE attempts ADD COLUMN log TEXT;
    """,
    # 7: requests to cancel a run (task_id NULL) or some of its tasks, made from another
    # process for the run's owner to apply; and a terminal state may be deleted once its run
    # row is gone (``gc`` deletes whole finished runs, the run row first), never before.
    """
    CREATE TABLE cancel_requests (
        id           INTEGER PRIMARY KEY,
        run_id       TEXT NOT NULL REFERENCES runs(run_id),
        task_id      TEXT,                    -- NULL: every open task of the run
        requested_at REAL NOT NULL,           -- wall-clock seconds since the epoch
        done_at      REAL                     -- when the run's owner applied it
    );
    CREATE INDEX cancel_requests_pending ON cancel_requests(run_id) WHERE done_at IS NULL;
    DROP TRIGGER results_are_kept;
    CREATE TRIGGER results_are_kept BEFORE DELETE ON results
    WHEN EXISTS (SELECT 1 FROM runs WHERE runs.run_id = OLD.run_id)
    BEGIN
        SELECT RAISE(ABORT, 'a terminal state is final');
    END;
    """,
    # 8: what a user forced on a run (a resume of a changed workflow with --force), in order.
    """
    CREATE TABLE run_overrides (
        run_id  TEXT NOT NULL REFERENCES runs(run_id),
        at      REAL NOT NULL,                -- wall-clock seconds since the epoch
        what    TEXT NOT NULL
    );
    CREATE INDEX run_overrides_run ON run_overrides(run_id);
    """,
    # 9: each attempt's usage as its agent reported it: JSON {input_tokens, output_tokens,
    # cost_usd} (coding agents), NULL when it reported none.
    """
    ALTER TABLE attempts ADD COLUMN usage TEXT;
    """,
    # 10: what the service keeps of the runs submitted to it (the document, to resume them);
    # the row goes with its run when ``gc`` deletes it. (Its events are in a file of their own
    # beside the journal, so that storing them never holds the journal's write lock.)
    """
    CREATE TABLE service_runs (
        run_id          TEXT PRIMARY KEY REFERENCES runs(run_id),
        idempotency_key TEXT UNIQUE,
        workflow        TEXT NOT NULL,        -- the submitted document, as JSON
        priority        INTEGER NOT NULL,
        labels          TEXT NOT NULL,        -- JSON object of strings
        retry_of        TEXT,
        submitted_at    REAL NOT NULL
    );
    CREATE TRIGGER service_rows_go_with_run AFTER DELETE ON runs
    BEGIN
        DELETE FROM service_runs WHERE run_id = OLD.run_id;
    END;
    """,
    # 11: the mean cost (USD) of an attempt per (spec, capability), learned from the usage the
    # attempts reported: routing's price (``RoutingWeights.objective``), kept across runs.
    """
    ALTER TABLE stats ADD COLUMN costs INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE stats ADD COLUMN mean_cost_usd REAL NOT NULL DEFAULT 0;
    """,
    # 12: repeats per (spec, capability): attempts on a task the spec had already failed, their
    # successes and the successes first tries would have had (``core.routing.repeat``: how much
    # a failure says of the next attempt there), kept across runs.
    """
    ALTER TABLE stats ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE stats ADD COLUMN repeat_successes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE stats ADD COLUMN repeat_expected REAL NOT NULL DEFAULT 0;
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, upto: int = SCHEMA_VERSION) -> int:
    """Apply every migration the file lacks (up to ``upto``); return the version reached.

    Each migration runs in its own write transaction, which also re-reads the version: a
    crash leaves the file at the previous version, and two processes opening a new file at
    once do not both apply a migration. Raises ``RuntimeError`` for a file from a newer
    metaagent than this one.
    """
    if not 0 <= upto <= SCHEMA_VERSION:
        raise ValueError(f"upto must be within 0..{SCHEMA_VERSION}, got {upto}")
    version = _version(conn)
    while version < upto:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _version(conn)  # another process may have migrated meanwhile
            if version < upto:
                version += 1
                for statement in _statements(MIGRATIONS[version - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return _version(conn)


def _version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"journal schema version {version} is newer than this metaagent ({SCHEMA_VERSION})"
        )
    return int(version)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit the transaction)."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # not a ";" inside a trigger body or a string
            if pending.strip(" \t\n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \t\n;"):
        raise ValueError(f"incomplete statement in a migration: {pending.strip()[:60]!r}")
    return out
