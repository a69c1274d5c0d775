"""The leases of an orchestrator's runs: a run is executed by one process at a time.

The orchestrator is one lease ``Owner`` (a random id, with its pid and host). It takes a run's
lease when it opens the run (``open_run``) or resumes it (``acquire``: ``RunOwned`` while another
live process holds it), renews its leases on a loop timer every ``LEASE_RENEW_S`` seconds (a
lease lasts ``LEASE_TTL_S`` after its last renewal; each journal flush renews too) and gives them
up when a run finishes (with the flush that records it) or the orchestrator closes. A renewal
that finds a lease taken over fails the orchestrator's runs, as a fenced flush does.

While it holds leases it also polls the journal every ``CANCEL_POLL_S`` seconds for cancel
requests of its runs (``metaagent cancel`` from another process; one indexed query per poll),
applies them through the orchestrator's ``cancel`` and marks them done with the flush that
records what they cancelled. The first poll comes right after a run is opened or resumed, so a
request recorded while nobody executed the run is applied by the resume.

Before its first run is opened or resumed, it stops what dead orchestrators of this journal
left running on this node (``runtime.reaper``): nothing is dispatched before that.

Renewals and polls are jobs of the journal's writer (``runtime.committer``): a locked journal
delays them, never the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from metaagent.errors import MetaAgentError
from metaagent.journal.base import JournalError, KnownRun
from metaagent.journal.leases import LEASE_RENEW_S, LEASE_TTL_S, Owner
from metaagent.runtime.reaper import Reaped, reap_leftovers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from metaagent.core.tasks import AgentTask
    from metaagent.journal.base import CancelRequest, Journal
    from metaagent.runtime.committer import Committer

    Cancel = Callable[[str, list[str] | None], Awaitable[None]]

__all__ = ["CANCEL_POLL_S", "LEASE_RENEW_S", "LEASE_TTL_S", "LeaseKeeper"]

CANCEL_POLL_S = 0.5
"""How often the owner of runs looks for cancel requests recorded by other processes (s)."""


class LeaseKeeper:
    """Takes, renews and gives up the leases of one orchestrator's runs in its journal.

    ``on_lost`` is called with the ``JournalError`` of a renewal that failed (a lease taken
    over, or a journal that cannot be written); renewing then stops. ``cancel`` (the
    orchestrator's) applies cancel requests; without it, none are polled for. ``io`` runs the
    journal calls of renewals and polls (and records what they did) while runs go on.
    """

    __slots__ = (
        "_applying", "_cancel", "_io", "_journal", "_on_lost", "_poll", "_polling", "_renewing",
        "_runs", "_seen", "_stopped", "_timer", "owner", "reaped",
    )  # fmt: skip

    def __init__(
        self,
        journal: Journal,
        on_lost: Callable[[JournalError], None],
        cancel: Cancel | None = None,
        *,
        io: Committer,
    ) -> None:
        self.owner = Owner.here()
        self._journal = journal
        self._io = io
        self._renewing = False  # a renewal is with the writer
        self._polling = False
        self._stopped = False  # stopped: what the writer answers later starts nothing
        self.reaped: Reaped | None = None  # what the first run's start found left running
        self._on_lost = on_lost
        self._cancel = cancel
        self._runs: set[str] = set()  # unfinished runs leased here: renewal goes on while any
        self._timer: asyncio.TimerHandle | None = None
        self._poll: asyncio.Handle | None = None
        self._seen: set[int] = set()  # requests applied here (done with the next flush)
        self._applying: set[asyncio.Task[None]] = set()

    def open_run(
        self,
        run_id: str,
        name: str,
        tasks: Sequence[AgentTask],
        key: str | None,
        source: str | None,
        workdir: str,
    ) -> str | None:
        """Journal a new run with its lease; or, when another process journaled this batch's
        run meanwhile (a race), return that run's id to resume instead (nothing applied)."""
        self._reap()
        try:
            self._journal.open_run(
                run_id, name, tasks, key=key, source=source, workdir=workdir, owner=self.owner
            )
        except KnownRun as exc:
            return exc.run_id
        self._hold(run_id)
        return None

    def acquire(self, run_id: str) -> None:
        """Take a journaled run's lease. Raises ``RunOwned`` while another live process holds
        it, ``KeyError`` for an unknown run."""
        self._reap()
        self._journal.acquire(run_id, self.owner)
        self._hold(run_id)

    def _reap(self) -> None:
        if self.reaped is None:
            self.reaped = reap_leftovers(self._journal)

    def finished(self, run_id: str) -> None:
        """The run ended (its lease went with the flush that recorded the end)."""
        self._runs.discard(run_id)

    def close(self, *, release: bool) -> None:
        """Stop renewing; with ``release``, give up every lease still held (flushing first)."""
        self.stop()
        self._runs.clear()
        if release:
            self._journal.release(self.owner)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None

    def _hold(self, run_id: str) -> None:
        self._stopped = False
        self._runs.add(run_id)
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._timer = loop.call_later(LEASE_RENEW_S, self._renew)
        if self._cancel is not None:
            if self._poll is not None:
                self._poll.cancel()
            self._poll = loop.call_soon(self._poll_cancels)  # once the run has started

    def _poll_cancels(self) -> None:
        """Apply the cancel requests recorded for the runs held here; poll again later."""
        self._poll = None
        if not self._runs or self._cancel is None or self._polling:
            return
        self._polling = True
        runs = set(self._runs)
        journal = self._journal
        self._io.call(
            lambda: journal.cancel_requests(runs),
            self._found,
            lambda _exc: self._found([]),  # a read that failed: the next poll tries again
        )

    def _found(self, found: list[CancelRequest]) -> None:
        self._polling = False
        if not self._runs or self._cancel is None or self._stopped:
            return
        by_run: dict[str, list[CancelRequest]] = {}
        for r in found:
            if r.id not in self._seen:
                self._seen.add(r.id)
                by_run.setdefault(r.run_id, []).append(r)
        for run_id, requests in by_run.items():
            whole = any(r.task_id is None for r in requests)
            ids = None if whole else list(dict.fromkeys(str(r.task_id) for r in requests))
            task = asyncio.ensure_future(self._apply(self._cancel, run_id, ids, requests))
            self._applying.add(task)
            task.add_done_callback(self._applying.discard)
        self._poll = asyncio.get_running_loop().call_later(CANCEL_POLL_S, self._poll_cancels)

    async def _apply(
        self, cancel: Cancel, run_id: str, ids: list[str] | None, requests: list[CancelRequest]
    ) -> None:
        # A task or run not open here any more (settled, or the run ended) has nothing to stop.
        with contextlib.suppress(MetaAgentError, KeyError):
            await cancel(run_id, ids)
        self._journal.cancel_done(requests)  # with the flush that records the cancel

    def _renew(self) -> None:
        self._timer = None
        if not self._runs or self._renewing:
            return
        self._renewing = True
        journal, owner = self._journal, self.owner
        self._io.call(lambda: journal.renew(owner), self._renewed, self._renew_failed)

    def _renewed(self, _: object) -> None:
        self._renewing = False
        if self._runs and self._timer is None and not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(LEASE_RENEW_S, self._renew)

    def _renew_failed(self, exc: Exception) -> None:
        self._renewing = False
        assert isinstance(exc, JournalError)
        if not self._stopped:
            self._on_lost(exc)
