"""Making journaled records durable without blocking the loop: the journal's writer thread.

A journal that writes a file (``Journal.blocking``: SQLite) is not written on the loop. The
loop records rows into the journal's in-memory batch as before; a commit detaches that batch
on the loop (``Journal.detach``) and hands the write, one transaction, to the writer thread.
What must wait for durability (the launch of the attempts a dispatch turn routed, the end of
a run) is a callback run on the loop once that commit has landed, so a locked database delays
commits and launches, never heartbeats, timeouts or results, which keep flowing into the
next batch meanwhile.

One job runs on the writer at a time, in order: commits, lease renewals and the cancel-request
polls. While one commit is in flight the next collects everything recorded meanwhile; it
starts when the first lands (group commit, pipelined with the loop's work).

The loop may call the journal directly only while the writer is idle: ``await idle()`` waits
for that and holds new jobs back until the caller's synchronous section has ended (the next
loop turn). Submitting, resuming and closing do that. On a loop driven by virtual time
(``runtime.virtual``), or for a journal that does not block (memory, none), every job runs
inline on the loop, as the same calls in the same order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from metaagent.journal.base import JournalError
from metaagent.runtime.sinks import Sink

if TYPE_CHECKING:
    from collections.abc import Callable

    from metaagent.core.learning import Learning
    from metaagent.journal.base import Journal

__all__ = ["Committer"]


def _timed(fn: Callable[[], None]) -> Callable[[], float]:
    """``fn``, returning how long it took on the thread that runs it (seconds)."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


class _Job:
    """Work for the writer: a journal call, or (``fn`` None) the commit of the batch."""

    __slots__ = ("done", "failed", "fn", "thens")

    def __init__(
        self,
        fn: Callable[[], object] | None,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        self.fn = fn
        self.done = done
        self.failed = failed
        self.thens: list[Callable[[], None]] = []


class Committer:
    """Runs the journal's work of a running orchestrator, on its writer thread or inline.

    ``sink`` is the orchestrator's (set by it), whose ``stage`` puts what learning learned
    into the batch. ``on_failed`` gets the ``JournalError`` of a commit that failed, after
    which nothing more is committed.
    """

    __slots__ = (
        "_commit_job", "_executor", "_idle", "_idle_calls", "_inflight", "_jobs", "_learning",
        "_loop", "_on_failed", "_section", "failed", "journal", "on_commit", "sink", "threaded",
    )  # fmt: skip

    def __init__(
        self,
        journal: Journal,
        learning: Learning,
        on_failed: Callable[[JournalError], None],
        *,
        thread: bool,
    ) -> None:
        self.journal = journal
        self.sink: Sink = Sink()
        self._learning = learning
        self._on_failed = on_failed
        self.threaded = thread  # until a loop driven by virtual time says otherwise
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: deque[_Job] = deque()
        self._commit_job: _Job | None = None  # the queued (not yet started) commit
        self._inflight = False
        self._section = False  # the loop uses the journal directly this turn: start nothing
        self._idle: list[asyncio.Future[None]] = []
        self._idle_calls: list[Callable[[], None]] = []
        self.failed: JournalError | None = None
        # Told, on the loop, how long each commit's write took (seconds): a metrics hook.
        self.on_commit: Callable[[float], None] | None = None

    # --- what the orchestrator asks for -------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether the writer has work (running or queued)."""
        return self._inflight or bool(self._jobs)

    def commit(self, then: Callable[[], None] | None = None) -> bool:
        """Make everything recorded so far durable, then call ``then`` on the loop. Inline
        this happens now, and False means the journal failed (``then`` is not called)."""
        if self.failed is not None:
            return False
        if not self._bind():
            try:
                start = time.perf_counter()
                self.sink.commit(self._learning)
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - start)
            except JournalError as exc:
                self._fail(exc)
                return False
            if then is not None:
                then()
            return True
        job = self._commit_job
        if job is None:
            job = self._commit_job = _Job(None)
            self._jobs.append(job)
        if then is not None:
            job.thens.append(then)
        self._pump()
        return True

    def call(
        self,
        fn: Callable[[], Any],
        done: Callable[[Any], None] | None = None,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """Run ``fn`` (a journal call) on the writer after what is queued, then ``done`` with
        its result on the loop, or ``failed`` with the ``JournalError`` it raised."""
        if not self._bind():
            try:
                result = fn()
            except JournalError as exc:
                if failed is not None:
                    failed(exc)
                return
            if done is not None:
                done(result)
            return
        self._jobs.append(_Job(fn, done, failed))
        self._pump()

    async def idle(self) -> None:
        """Wait until the writer has nothing in flight or queued; until the caller's next
        ``await``, the loop may then use the journal directly."""
        if not self._bind():
            return
        while self.busy:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(fut)
            await fut
        if not self._section:
            self._section = True
            asyncio.get_running_loop().call_soon(self._end_section)

    def when_idle(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` on the loop once the writer is idle (now, if it is)."""
        self._idle_calls.append(fn)
        if not self.busy:
            self._now_idle()

    async def drain(self) -> None:
        """Commit what is recorded and wait until it has landed (or failed)."""
        self.commit()
        await self.idle()

    def close(self) -> None:
        """Stop the writer thread (after the job it runs)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- the writer ---------------------------------------------------------------------------

    def _bind(self) -> bool:
        """Whether jobs go to the writer thread (fixed at the first job, by the loop)."""
        if self.threaded and self._loop is None:
            loop = asyncio.get_running_loop()
            if getattr(loop, "virtual_time", False):
                self.threaded = False  # its clock jumps while a thread works: stay inline
            else:
                self._loop = loop
        return self.threaded

    def _pump(self) -> None:
        """Start the next job on the writer, unless one runs or the loop holds the journal."""
        while not (self._inflight or self._section or not self._jobs or self.failed):
            job = self._jobs.popleft()
            fn = job.fn
            if fn is None:  # the commit: what the batch holds now goes
                if job is self._commit_job:
                    self._commit_job = None
                try:
                    self.sink.stage(self._learning)
                    fn = self.journal.detach()
                except JournalError as exc:  # a run whose lease was lost: nothing written
                    self._fail(exc)
                    return
                if fn is None:  # nothing to write: what waited for it may go now
                    for then in job.thens:
                        then()
                    continue
                if self.on_commit is not None:
                    fn = _timed(fn)
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="metaagent-journal"
                )
            assert self._loop is not None
            self._inflight = True
            fut = self._loop.run_in_executor(self._executor, fn)
            fut.add_done_callback(lambda f, job=job: self._landed(job, f))  # type: ignore[misc]
            return
        if not self.busy:
            self._now_idle()

    def _landed(self, job: _Job, fut: asyncio.Future[Any]) -> None:
        self._inflight = False
        exc = fut.exception()
        if exc is None:
            if job.done is not None:
                job.done(fut.result())
            took = fut.result()
            if job.fn is None and self.on_commit is not None and isinstance(took, float):
                self.on_commit(took)
            for then in job.thens:
                then()
        elif job.fn is not None and job.failed is not None and isinstance(exc, JournalError):
            job.failed(exc)  # a call whose caller handles the journal's refusal
        elif isinstance(exc, JournalError):
            self._fail(exc)
        else:
            self._fail(JournalError(f"the journal's writer failed: {exc!r}"))
        self._pump()

    def _now_idle(self) -> None:
        """The writer has nothing to do: wake who waits for that; the calls waiting for it
        use the journal directly, so nothing starts before the next loop turn."""
        waiting, self._idle = self._idle, []
        for w in waiting:
            if not w.done():
                w.set_result(None)
        calls, self._idle_calls = self._idle_calls, []
        if calls:
            if not self._section and self._loop is not None:
                self._section = True
                self._loop.call_soon(self._end_section)
            for fn in calls:
                fn()

    def _end_section(self) -> None:
        self._section = False
        self._pump()

    def _fail(self, exc: JournalError) -> None:
        if self.failed is None:
            self.failed = exc
            self._jobs.clear()
            self._commit_job = None
            self._on_failed(exc)
