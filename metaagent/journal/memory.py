"""A journal in memory: the same contract as SQLite, for library users and tests that are not
about durability. Nothing survives the process."""

from __future__ import annotations

import time
from collections import Counter
from copy import copy
from dataclasses import replace
from itertools import count
from typing import TYPE_CHECKING

from metaagent.journal.base import (
    CancelRequest,
    Collected,
    DeferredPart,
    JournalError,
    KnownRun,
    RunInfo,
    StoredResult,
    StoredRun,
    settled,
)
from metaagent.journal.leases import LEASE_TTL_S, Lease, Owner, lost_message, refuse

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from metaagent.core.decisions import Decision
    from metaagent.core.learning import ArmStats
    from metaagent.core.tasks import AgentTask, Attempt, TaskState


class _Store:
    """What a memory journal holds, shared by every handle on it (``MemoryJournal.reopen``)."""

    __slots__ = (
        "attempts", "cancel_ids", "cancels", "decisions", "keys", "leases", "results", "runs",
        "stats", "tasks",
    )  # fmt: skip

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, object]] = {}
        self.tasks: dict[str, list[AgentTask]] = {}
        self.results: dict[str, dict[str, StoredResult]] = {}
        self.attempts: dict[str, dict[str, dict[int, Attempt]]] = {}
        self.decisions: dict[str, list[dict[str, object]]] = {}
        self.keys: dict[str, tuple[str, str]] = {}
        self.stats: dict[tuple[str, str], ArmStats] = {}
        self.leases: dict[str, Lease] = {}
        self.cancels: dict[int, CancelRequest] = {}  # pending cancel requests, by id
        self.cancel_ids = count(1)


class MemoryJournal:
    """Keeps every run in dictionaries. A second terminal state for a task raises.

    Leases are held per handle, as the SQLite journal holds them per connection: ``reopen()``
    is another handle on the same runs (as a second process opening the same file), and a
    write of a run whose lease this handle lost is dropped, the next ``flush`` raising
    ``JournalError`` naming the new owner. ``wall`` is the leases' wall clock.
    """

    blocking = False

    def __init__(self, *, wall: Callable[[], float] = time.time, _store: _Store | None = None):
        store = _Store() if _store is None else _store
        self._store = store
        self._runs = store.runs
        self._tasks = store.tasks
        self._results = store.results
        self._attempts = store.attempts
        self._decisions = store.decisions
        self._keys = store.keys
        self._stats = store.stats
        self._leases = store.leases
        self._wall = wall
        self._held: dict[str, Owner] = {}
        self._lost: dict[str, Lease | None] = {}
        self._done: set[str] = set()  # finished through this handle (lease released)
        self._refused: set[str] = set()  # runs written since the last flush without a lease

    def reopen(self) -> MemoryJournal:
        """Another handle on the same runs, with leases of its own."""
        return MemoryJournal(wall=self._wall, _store=self._store)

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
        if run_id in self._runs:
            raise JournalError(f"run {run_id!r} is already journaled (nothing was applied)")
        found = None if key is None else self.find_unfinished(key)
        if found is not None:
            raise KnownRun(f"run {found!r} has this key and is not finished", run_id=found)
        keys = [t.key for t in tasks if t.key is not None]
        holders = {self._keys.get(k, ("", ""))[0] for k in keys}
        if keys and len(keys) == len(tasks) and len(holders) == 1 and "" not in holders:
            held = holders.pop()
            raise KnownRun(
                f"run {held!r} holds every idempotency key of this batch: {', '.join(keys[:10])}",
                run_id=held,
            )
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
            "overrides": (),
        }
        self._tasks[run_id] = list(tasks)
        self._results[run_id] = {}
        self._attempts[run_id] = {}
        self._decisions[run_id] = []
        for t in tasks:
            if t.key is not None:
                self._keys[t.key] = (run_id, t.id)
        if owner is not None:
            self.acquire(run_id, owner)

    def add_tasks(self, run_id: str, tasks: Sequence[AgentTask]) -> None:
        if self._writable(run_id):
            self._tasks[run_id].extend(tasks)

    def attempt_started(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        if self._writable(run_id):
            self._attempts[run_id].setdefault(task_id, {})[attempt.number] = copy(attempt)

    def attempt_finished(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        if self._writable(run_id):
            self._attempts[run_id].setdefault(task_id, {})[attempt.number] = copy(attempt)

    def task_finished(
        self, run_id: str, task_id: str, state: TaskState, output: object, error: str | None,
        at: float,
    ) -> None:  # fmt: skip
        if not self._writable(run_id):
            return
        results = self._results[run_id]
        if task_id in results:
            raise JournalError(
                f"task {task_id!r} of run {run_id!r} already has a terminal state (it is final)"
            )
        results[task_id] = StoredResult(state, output, error, at)

    def decision(self, run_id: str, decision: Decision, at: float) -> None:
        if not self._writable(run_id):
            return
        data = decision.to_json()
        data["at"] = at
        self._decisions[run_id].append(data)

    def run_finished(self, run_id: str) -> None:
        if not self._writable(run_id):
            return
        run = self._runs[run_id]
        if run["finished"] is None:
            run["finished"] = time.time()
        owner = self._held.pop(run_id, None)
        if owner is not None:
            self._leases.pop(run_id, None)
            self._done.add(run_id)

    def save_stats(self, stats: Iterable[tuple[str, str, ArmStats]]) -> None:
        for spec, cap, arm in stats:
            self._stats[(spec, cap)] = copy(arm)

    def load_stats(self) -> list[tuple[str, str, ArmStats]]:
        return [(s, c, copy(a)) for (s, c), a in self._stats.items()]

    def detach(self) -> Callable[[], None] | None:
        self.flush()  # in memory: nothing to wait for
        return None

    def flush(self) -> None:
        """Writes are applied at once; a flush renews this handle's leases and raises
        ``JournalError`` for the runs written since the last one without their lease."""
        for owner in {o.id: o for o in self._held.values()}.values():
            self.renew(owner)
        self._refuse()

    # --- leases -------------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: Owner) -> Lease:
        if run_id not in self._runs:
            raise KeyError(f"no run {run_id!r} in this journal")
        now = self._wall()
        held = self._leases.get(run_id)
        if held is not None and held.owner.id != owner.id and held.live(now):
            raise refuse(held, now)
        since = held.since if held is not None and held.owner.id == owner.id else now
        lease = self._leases[run_id] = Lease(run_id, owner, since, now, now + LEASE_TTL_S)
        self._held[run_id] = owner
        self._lost.pop(run_id, None)
        self._done.discard(run_id)
        return lease

    def renew(self, owner: Owner) -> None:
        now = self._wall()
        for run_id in [r for r, o in self._held.items() if o.id == owner.id]:
            lease = self._leases.get(run_id)
            if lease is None or lease.owner.id != owner.id:
                self._lose(run_id)
            else:
                self._leases[run_id] = replace(
                    lease, heartbeat_at=now, expires_at=now + LEASE_TTL_S
                )
        self._refuse()

    def release(self, owner: Owner, run_id: str | None = None) -> None:
        for r in [r for r, o in self._held.items() if o.id == owner.id and run_id in (None, r)]:
            lease = self._leases.get(r)
            if lease is not None and lease.owner.id == owner.id:
                del self._leases[r]
            del self._held[r]
            self._lost[r] = None

    def lease(self, run_id: str) -> Lease | None:
        return self._leases.get(run_id)

    def leases(self) -> list[Lease]:
        return list(self._leases.values())

    def _writable(self, run_id: str) -> bool:
        """Whether this handle may write the run now: it holds its lease (or finished the
        run), or nobody does and it did not lose it."""
        owner = self._held.get(run_id)
        if owner is not None:
            lease = self._leases.get(run_id)
            if lease is not None and lease.owner.id == owner.id:
                return True
            self._lose(run_id)
        elif run_id in self._done or (run_id not in self._lost and run_id not in self._leases):
            return True  # finished here, or written directly while nobody holds its lease
        else:
            self._lost.setdefault(run_id, self._leases.get(run_id))
            self._refused.add(run_id)
        return False

    def _lose(self, run_id: str) -> None:
        self._held.pop(run_id, None)
        self._lost[run_id] = self._leases.get(run_id)
        self._refused.add(run_id)

    def _refuse(self) -> None:
        if self._refused:
            lost, self._refused = sorted(self._refused), set()
            now = self._wall()
            raise JournalError(
                "memory journal: "
                + "; ".join(lost_message(r, self._lost.get(r), now) for r in lost)
            )

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
            run["overrides"],  # type: ignore[arg-type]
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

    # --- operating on runs from outside --------------------------------------------------------

    def record_override(self, run_id: str, what: str) -> None:
        if run_id not in self._runs:
            raise KeyError(f"no run {run_id!r} in this journal")
        run = self._runs[run_id]
        run["overrides"] = (*run["overrides"], what)  # type: ignore[misc]

    def request_cancel(self, run_id: str, task_ids: Sequence[str] | None = None) -> None:
        if run_id not in self._runs:
            raise KeyError(f"no run {run_id!r} in this journal")
        if self._runs[run_id]["finished"] is not None:
            raise ValueError(f"run {run_id!r} has finished: there is nothing to cancel")
        wanted: list[str | None] = [None] if task_ids is None else list(dict.fromkeys(task_ids))
        known = {t.id for t in self._tasks[run_id]}
        missing = [t for t in wanted if t is not None and t not in known]
        if missing:
            raise KeyError(f"run {run_id!r} has no task {', '.join(map(repr, missing))}")
        for tid in wanted:
            i = next(self._store.cancel_ids)
            self._store.cancels[i] = CancelRequest(i, run_id, tid, self._wall())

    def cancel_requests(self, run_ids: Collection[str]) -> list[CancelRequest]:
        runs = set(run_ids)
        return [r for _, r in sorted(self._store.cancels.items()) if r.run_id in runs]

    def cancel_done(self, requests: Sequence[CancelRequest]) -> None:
        for r in requests:
            self._store.cancels.pop(r.id, None)

    def delete_finished(
        self, older_than_s: float, *, now: float | None = None, dry_run: bool = False
    ) -> Collected:
        cutoff = (self._wall() if now is None else now) - older_than_s
        runs = [
            r for r, run in self._runs.items()
            if isinstance(run["finished"], float) and run["finished"] < cutoff
            and r not in self._leases
        ]  # fmt: skip
        rows = sum(self._rows_of(r) for r in runs)
        if not dry_run:
            for r in runs:
                self._delete(r)
        return Collected(runs, rows)

    def _rows_of(self, run_id: str) -> int:
        """The run's rows: itself, its tasks, attempts, results, decisions, cancel requests."""
        requests = sum(1 for c in self._store.cancels.values() if c.run_id == run_id)
        attempts = sum(len(a) for a in self._attempts[run_id].values())
        held = (self._tasks[run_id], self._results[run_id], self._decisions[run_id])
        return 1 + attempts + requests + sum(len(h) for h in held)

    def _delete(self, run_id: str) -> None:
        for t in self._tasks.pop(run_id):
            if t.key is not None:
                self._keys.pop(t.key, None)
        for store in (self._runs, self._results, self._attempts, self._decisions):
            del store[run_id]
        cancels = self._store.cancels
        for i in [i for i, c in cancels.items() if c.run_id == run_id]:
            del cancels[i]

    def close(self) -> None:
        """Give up the leases held through this handle."""
        for owner in {o.id: o for o in self._held.values()}.values():
            self.release(owner)


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
