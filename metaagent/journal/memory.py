"""A journal in memory: the same contract as SQLite, for library users and tests that are not
about durability. Nothing survives the process."""

from __future__ import annotations

import time
from collections import Counter
from copy import copy
from typing import TYPE_CHECKING

from metaagent.journal.base import (
    DeferredPart,
    JournalError,
    RunInfo,
    StoredResult,
    StoredRun,
    settled,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from metaagent.core.decisions import Decision
    from metaagent.core.learning import ArmStats
    from metaagent.core.tasks import AgentTask, Attempt, TaskState


class MemoryJournal:
    """Keeps every run in dictionaries. A second terminal state for a task raises."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, object]] = {}
        self._tasks: dict[str, list[AgentTask]] = {}
        self._results: dict[str, dict[str, StoredResult]] = {}
        self._attempts: dict[str, dict[str, dict[int, Attempt]]] = {}
        self._decisions: dict[str, list[dict[str, object]]] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._stats: dict[tuple[str, str], ArmStats] = {}

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
        if run_id in self._runs:
            raise JournalError(f"run {run_id!r} is already journaled (nothing was applied)")
        keys = [t.key for t in tasks if t.key is not None]
        taken = sorted({k for k in keys if k in self._keys} | _repeated(keys))
        if taken:
            raise JournalError(
                f"idempotency keys already journaled: {', '.join(taken)} (nothing was applied)"
            )
        self._runs[run_id] = {
            "name": name,
            "key": key,
            "created_at": time.time(),
            "finished": None,
            "source": source,
            "workdir": workdir,
        }
        self._tasks[run_id] = list(tasks)
        self._results[run_id] = {}
        self._attempts[run_id] = {}
        self._decisions[run_id] = []
        for t in tasks:
            if t.key is not None:
                self._keys[t.key] = (run_id, t.id)

    def add_tasks(self, run_id: str, tasks: Sequence[AgentTask]) -> None:
        self._tasks[run_id].extend(tasks)

    def attempt_started(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        self._attempts[run_id].setdefault(task_id, {})[attempt.number] = copy(attempt)

    def attempt_finished(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        self._attempts[run_id].setdefault(task_id, {})[attempt.number] = copy(attempt)

    def task_finished(
        self, run_id: str, task_id: str, state: TaskState, output: object, error: str | None,
        at: float,
    ) -> None:  # fmt: skip
        results = self._results[run_id]
        if task_id in results:
            raise JournalError(
                f"task {task_id!r} of run {run_id!r} already has a terminal state (it is final)"
            )
        results[task_id] = StoredResult(state, output, error, at)

    def decision(self, run_id: str, decision: Decision, at: float) -> None:
        data = decision.to_json()
        data["at"] = at
        self._decisions[run_id].append(data)

    def run_finished(self, run_id: str) -> None:
        run = self._runs[run_id]
        if run["finished"] is None:
            run["finished"] = time.time()

    def save_stats(self, stats: Iterable[tuple[str, str, ArmStats]]) -> None:
        for spec, cap, arm in stats:
            self._stats[(spec, cap)] = copy(arm)

    def load_stats(self) -> list[tuple[str, str, ArmStats]]:
        return [(s, c, copy(a)) for (s, c), a in self._stats.items()]

    def flush(self) -> None:
        return None

    def find_unfinished(self, key: str) -> str | None:
        for rid, run in reversed(self._runs.items()):
            if run["key"] == key and run["finished"] is None:
                return rid
        return None

    def find_task(self, key: str) -> tuple[str, str] | None:
        return self._keys.get(key)

    def _info(self, run_id: str) -> RunInfo:
        run = self._runs[run_id]
        counts: dict[str, int] = {}
        for r in self._results[run_id].values():
            counts[r.state.value] = counts.get(r.state.value, 0) + 1
        created = run["created_at"]
        finished = run["finished"]
        assert isinstance(created, float)
        return RunInfo(
            run_id,
            str(run["name"]),
            None if run["key"] is None else str(run["key"]),
            created,
            finished if isinstance(finished, float) else None,
            len(self._tasks[run_id]),
            counts,
            None if run["source"] is None else str(run["source"]),
            None if run["workdir"] is None else str(run["workdir"]),
        )

    def load_run(self, run_id: str, *, decisions: bool = True, lazy: bool = False) -> StoredRun:
        info = self._info(run_id)
        tasks = list(self._tasks[run_id])
        results = dict(self._results[run_id])
        attempts = {
            tid: [copy(a) for _, a in sorted(by_n.items())]
            for tid, by_n in self._attempts[run_id].items()
        }
        made = list(self._decisions[run_id]) if decisions else []
        run = StoredRun(info, tasks, results, attempts, made)
        if lazy:
            _defer_settled(run)
        return run

    def list_runs(self, limit: int = 50) -> list[RunInfo]:
        ids = sorted(self._runs, key=lambda r: -float(self._runs[r]["created_at"]))  # type: ignore[arg-type]
        return [self._info(r) for r in ids[:limit]]

    def close(self) -> None:
        return None


def _repeated(keys: list[str]) -> set[str]:
    return {k for k, n in Counter(keys).items() if n > 1}


def _defer_settled(run: StoredRun) -> None:
    """Moves the settled tasks of a run just read (its own copies) into its deferred part, as
    a lazy read leaves them out (see ``DeferredPart``)."""
    tasks, results, attempts = run.tasks, run.results, run.attempts
    later = [
        t for t in tasks
        if t.id in results
        and settled(results[t.id].state.value, t.decompose, t.metadata)
    ]  # fmt: skip
    left = {t.id for t in later}
    last_at = _latest(results, attempts)
    part = StoredRun(
        run.info,
        later,
        {tid: results.pop(tid) for tid in left},
        {tid: attempts.pop(tid) for tid in left if tid in attempts},
    )
    outputs = {tid: part.results[tid].output for tid in left}
    run.deferred = DeferredPart(outputs, [t.id for t in tasks], last_at, lambda: part)
    run.tasks = [t for t in tasks if t.id not in left]


def _latest(results: Mapping[str, StoredResult], attempts: Mapping[str, list[Attempt]]) -> float:
    """The latest time recorded among these results and attempts (0 if none)."""
    return max(
        [r.finished_at for r in results.values()]
        + [a.finished_at or a.started_at for seen in attempts.values() for a in seen]
        + [0.0]
    )
