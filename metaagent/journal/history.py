"""Task durations in earlier runs of the same workflow, for ranking a new run (read only).

``task_durations(path, key)`` opens the SQLite journal read-only and returns, per task id, the
mean duration of the succeeded attempts of that task in the finished runs recorded with this
key (a workflow's identity). ``Scheduler.submit(..., history=...)`` ranks the tasks it names by
these durations when they declare no ``estimate_s``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["task_durations"]

_QUERY = """
    SELECT a.task_id, AVG(a.finished_at - a.started_at)
    FROM attempts a JOIN runs r ON r.run_id = a.run_id
    WHERE r.key = ? AND r.finished_at IS NOT NULL AND a.outcome = 'succeeded'
      AND a.finished_at IS NOT NULL AND r.run_id IN (
        SELECT run_id FROM runs WHERE key = ? AND finished_at IS NOT NULL
        ORDER BY created_at DESC LIMIT ?
      )
    GROUP BY a.task_id
"""


def task_durations(path: str | Path, key: str, *, runs: int = 20) -> dict[str, float]:
    """Mean seconds of each task's succeeded attempts over the last ``runs`` finished runs
    with ``key``; empty when the journal does not exist or holds none."""
    file = Path(path)
    if not file.exists():
        return {}
    conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(_QUERY, (key, key, runs)).fetchall()
    finally:
        conn.close()
    return {str(tid): float(mean) for tid, mean in rows if mean is not None and mean > 0}
