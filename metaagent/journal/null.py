"""``NullJournal``: the journal of an orchestrator that records nothing.

A null object (as dramatiq's stub broker): the runtime always talks to a journal, so it has no
"is there a journal" branches. Writes are dropped, look-ups find nothing, and a run cannot be
read back (``load_run`` raises ``KeyError``, as for any unknown run) nor leased (``acquire``
raises ``KeyError`` too); nothing is shared, so there is nothing to fence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.journal.base import Collected

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from metaagent.core.decisions import Decision
    from metaagent.core.learning import ArmStats
    from metaagent.core.tasks import AgentTask, Attempt, TaskState
    from metaagent.journal.base import CancelRequest, RunInfo, StoredRun
    from metaagent.journal.leases import Lease, Owner


class NullJournal:
    """Keeps nothing: runs last as long as the process."""

    __slots__ = ()
    blocking = False

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
        return None

    def acquire(self, run_id: str, owner: Owner) -> Lease:
        raise KeyError(f"run {run_id!r}: this orchestrator has no journal to lease it in")

    def renew(self, owner: Owner) -> None:
        return None

    def release(self, owner: Owner, run_id: str | None = None) -> None:
        return None

    def lease(self, run_id: str) -> Lease | None:
        return None

    def leases(self) -> list[Lease]:
        return []

    def add_tasks(self, run_id: str, tasks: Sequence[AgentTask]) -> None:
        return None

    def attempt_started(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        return None

    def attempt_finished(self, run_id: str, task_id: str, attempt: Attempt) -> None:
        return None

    def task_finished(
        self,
        run_id: str,
        task_id: str,
        state: TaskState,
        output: object,
        error: str | None,
        at: float,
    ) -> None:
        return None

    def decision(self, run_id: str, decision: Decision, at: float) -> None:
        return None

    def run_finished(self, run_id: str) -> None:
        return None

    def save_stats(self, stats: Iterable[tuple[str, str, ArmStats]]) -> None:
        return None

    def load_stats(self) -> list[tuple[str, str, ArmStats]]:
        return []

    def flush(self) -> None:
        return None

    def detach(self) -> Callable[[], None] | None:
        return None

    def find_unfinished(self, key: str) -> str | None:
        return None

    def find_task(self, key: str) -> tuple[str, str] | None:
        return None

    def load_run(self, run_id: str, *, decisions: bool = True, lazy: bool = False) -> StoredRun:
        raise KeyError(f"run {run_id!r}: this orchestrator has no journal to read it from")

    def list_runs(self, limit: int = 50) -> list[RunInfo]:
        return []

    def record_override(self, run_id: str, what: str) -> None:
        return None  # nothing is kept

    def request_cancel(self, run_id: str, task_ids: Sequence[str] | None = None) -> None:
        return None  # a run of this orchestrator is cancelled through ``Orchestrator.cancel``

    def cancel_requests(self, run_ids: Collection[str]) -> list[CancelRequest]:
        return []

    def cancel_done(self, requests: Sequence[CancelRequest]) -> None:
        return None

    def delete_finished(
        self, older_than_s: float, *, now: float | None = None, dry_run: bool = False
    ) -> Collected:
        return Collected([], 0)

    def close(self) -> None:
        return None
