"""The journal protocol: what the runtime writes, and what it reads back to resume a run.

Writes are buffered and made durable by ``flush`` in one transaction (group commit); the runtime
flushes before it acts on what it wrote. ``open_run`` commits at once: a submission is journaled
before it is acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from metaagent.errors import MetaAgentError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from metaagent.core.decisions import Decision
    from metaagent.core.learning import ArmStats
    from metaagent.core.tasks import AgentTask, Attempt, TaskState
    from metaagent.journal.leases import Lease, Owner


class JournalError(MetaAgentError, RuntimeError):
    """The journal could not be written (or read); a batch that failed was not applied."""


class KnownRun(JournalError):
    """``open_run`` found that the journal already holds this batch's run (an unfinished run
    with its key, or the run holding its idempotency keys), recorded meanwhile by another
    process; nothing was applied. Resume ``run_id`` instead."""

    def __init__(self, message: str, *, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(message)


Durability = Literal["normal", "full"]
"""``normal`` survives any process crash; ``full`` also survives power loss (fsync each commit)."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as the journal lists it."""

    run_id: str
    name: str
    key: str | None
    created_at: float  # wall clock, seconds since the epoch
    finished_at: float | None
    tasks: int
    counts: dict[str, int]
    source: str | None = None  # the workflow file the run came from
    workdir: str | None = None
    overrides: tuple[str, ...] = ()  # what users forced on it (``record_override``), in order

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class StoredResult(NamedTuple):
    """A terminal state as recorded (times in seconds since the run started).

    A tuple, in the shape ``Scheduler.restore`` takes results: a run read back is handed over
    without a copy.
    """

    state: TaskState
    output: object
    error: str | None
    finished_at: float


@dataclass(slots=True)
class StoredRun:
    """Everything needed to resume or show a run (or, read lazily, to start resuming it)."""

    info: RunInfo
    tasks: list[AgentTask]
    results: dict[str, StoredResult] = field(default_factory=dict)
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    decisions: list[dict[str, object]] = field(default_factory=list)
    deferred: DeferredPart | None = None  # what a lazy read left out, if anything


@dataclass(slots=True)
class DeferredPart:
    """The part of a run that a lazy ``load_run`` leaves out: its *settled* tasks, those that
    succeeded and take no part in a decomposition. Nothing about them can change any more, so
    resuming needs only their ids and, for a dependent about to start, their outputs; their
    records (task, result, attempts) are read by ``read`` once work is under way again.
    """

    outputs: Mapping[str, object]  # output by task id; its keys are the settled tasks
    order: list[str]  # every task id of the run, in submission order
    last_at: float  # the latest time recorded for the run (seconds since it started)
    read: Callable[[], StoredRun]  # the settled tasks with their results and attempts


class CancelRequest(NamedTuple):
    """A request, recorded from another process, to cancel tasks of a run (``task_id`` None:
    every open task) that its owner has not applied yet (``requested_at``: wall clock)."""

    id: int
    run_id: str
    task_id: str | None
    requested_at: float


class Collected(NamedTuple):
    """What ``delete_finished`` deleted (or, on a dry run, would delete): the runs, and how
    many rows of every table they held."""

    runs: list[str]
    rows: int


def in_decomposition(decompose: object, metadata: Mapping[str, object] | None) -> bool:
    """Whether a task is a decomposed task or a sub-task (by its ``decompose`` field and its
    metadata's ``parent``): those are relinked to each other when a run resumes."""
    return decompose is not None or bool(metadata and "parent" in metadata)


def settled(state: str, decompose: object, metadata: Mapping[str, object] | None) -> bool:
    """Whether a task in this recorded state may be left out of a lazy read: it succeeded and
    takes no part in a decomposition."""
    return state == "succeeded" and not in_decomposition(decompose, metadata)


class Journal(Protocol):
    """Where runs are recorded. Implementations: ``SqliteJournal`` and ``MemoryJournal``.

    **Leases.** A run is written by one owner at a time (``journal.leases``): ``open_run`` takes
    the new run's lease, ``acquire`` takes a journaled one. Every flush is fenced: rows of a
    run whose lease this journal (this connection) no longer holds are not written, and the
    flush raises ``JournalError`` naming the new owner, as every later one does for that run.
    """

    blocking: bool
    """Whether its writes wait on a file (or anything slower than memory): a running
    orchestrator then writes it from a thread of its own (``runtime.committer``)."""

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
        """Record a new run and its tasks, durably, before returning, with its lease held by
        ``owner`` (in the same transaction; no lease when None: a run written directly, which
        anyone may then acquire). Raises ``KnownRun`` (nothing applied)
        when the journal already holds this batch's run: an unfinished run with ``key``, or
        the one run holding all its tasks' idempotency keys."""
        ...

    def acquire(self, run_id: str, owner: Owner) -> Lease:
        """Take the lease of a journaled run, in one transaction: a new one, a renewal of
        ``owner``'s own, or a take-over of an expired (or dead) owner's. Raises ``RunOwned``
        naming the owner while another owner's lease is live, ``KeyError`` for an unknown run.
        """
        ...

    def renew(self, owner: Owner) -> None:
        """Extend every lease ``owner`` holds through this journal (one transaction). Raises
        ``JournalError`` naming the new owner for a lease that was taken over."""
        ...

    def release(self, owner: Owner, run_id: str | None = None) -> None:
        """Flush, then give up ``owner``'s lease of ``run_id`` (of every run when None), so
        that another process may resume the run at once. Finishing a run (``run_finished``)
        releases its lease with the flush that records it."""
        ...

    def lease(self, run_id: str) -> Lease | None:
        """The run's lease as recorded, live or not (None when nobody holds it)."""
        ...

    def leases(self) -> list[Lease]:
        """Every lease recorded (of unfinished runs whose owner has not given it up), live
        or not: those of dead owners name the processes whose leftovers may be reaped."""
        ...

    def add_tasks(self, run_id: str, tasks: Sequence[AgentTask]) -> None:
        """Record sub-tasks added to a run (a decomposition), with the next flush."""
        ...

    def attempt_started(self, run_id: str, task_id: str, attempt: Attempt) -> None: ...

    def attempt_finished(self, run_id: str, task_id: str, attempt: Attempt) -> None: ...

    def task_finished(
        self,
        run_id: str,
        task_id: str,
        state: TaskState,
        output: object,
        error: str | None,
        at: float,
    ) -> None:
        """Record a terminal state. Recording one twice is an error (never an overwrite)."""
        ...

    def decision(self, run_id: str, decision: Decision, at: float) -> None: ...

    def run_finished(self, run_id: str) -> None: ...

    def save_stats(self, stats: Iterable[tuple[str, str, ArmStats]]) -> None: ...

    def load_stats(self) -> list[tuple[str, str, ArmStats]]: ...

    def detach(self) -> Callable[[], None] | None:
        """Take what is pending out of the journal's buffer and return the write that makes it
        durable (one transaction, fenced as ``flush`` is), to be run on another thread, while
        this thread goes on recording into a new buffer; None when nothing is pending. A
        journal that does not block may write at once and return None. Raises
        ``JournalError`` (nothing taken) for rows of a run whose lease was lost here; the
        write raises it for a commit that failed, whose rows are then gone."""
        ...

    def flush(self) -> None:
        """Make everything written so far durable, in one transaction."""
        ...

    def find_unfinished(self, key: str) -> str | None:
        """The newest unfinished run with this key (a workflow's identity), if any."""
        ...

    def find_task(self, key: str) -> tuple[str, str] | None:
        """The (run, task) holding this idempotency key, if any."""
        ...

    def load_run(self, run_id: str, *, decisions: bool = True, lazy: bool = False) -> StoredRun:
        """Read a run back (raises ``KeyError`` for an unknown run).

        ``decisions=False`` leaves out the decision log, which resuming does not need.
        ``lazy=True`` also leaves out the settled tasks (see ``DeferredPart``), so that a large
        run can dispatch again before all of it is read: ``StoredRun.deferred`` then says what
        was left out and reads it on demand.
        """
        ...

    def list_runs(self, limit: int = 50) -> list[RunInfo]: ...

    def record_override(self, run_id: str, what: str) -> None:
        """Record, durably, that a user forced something on a run (``what`` says it: a resume
        of a changed workflow with ``--force``). Raises ``KeyError`` for an unknown run."""
        ...

    def request_cancel(self, run_id: str, task_ids: Sequence[str] | None = None) -> None:
        """Record, durably (one transaction), a request to cancel tasks of an unfinished run
        (every open task when None), for whoever executes it to apply. Raises ``KeyError``
        for an unknown run or task id, ``ValueError`` for a finished run (nothing recorded)."""
        ...

    def cancel_requests(self, run_ids: Collection[str]) -> list[CancelRequest]:
        """The requests of these runs not applied yet, oldest first, in one query."""
        ...

    def cancel_done(self, requests: Sequence[CancelRequest]) -> None:
        """Mark requests applied, with the next flush (the one that records what they
        cancelled, so that a crash before it leaves them pending for a resume)."""
        ...

    def delete_finished(
        self, older_than_s: float, *, now: float | None = None, dry_run: bool = False
    ) -> Collected:
        """Delete every row of every run that finished more than ``older_than_s`` seconds
        before ``now`` (wall clock, default the present), in one transaction; never an
        unfinished or leased run. ``dry_run`` counts what would go and deletes nothing."""
        ...

    def close(self) -> None: ...
