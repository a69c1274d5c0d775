"""The leases of an orchestrator's runs: a run is executed by one process at a time.

The orchestrator is one lease ``Owner`` (a random id, with its pid and host). It takes a run's
lease when it opens the run (``open_run``) or resumes it (``acquire``: ``RunOwned`` while another
live process holds it), renews its leases on a loop timer every ``LEASE_RENEW_S`` seconds (a
lease lasts ``LEASE_TTL_S`` after its last renewal; each journal flush renews too) and gives them
up when a run finishes (with the flush that records it) or the orchestrator closes. A renewal
that finds a lease taken over fails the orchestrator's runs, as a fenced flush does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from metaagent.journal.base import JournalError, KnownRun
from metaagent.journal.leases import LEASE_RENEW_S, LEASE_TTL_S, Owner

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.tasks import AgentTask
    from metaagent.journal.base import Journal

__all__ = ["LEASE_RENEW_S", "LEASE_TTL_S", "LeaseKeeper"]


class LeaseKeeper:
    """Takes, renews and gives up the leases of one orchestrator's runs in its journal.

    ``on_lost`` is called with the ``JournalError`` of a renewal that failed (a lease taken
    over, or a journal that cannot be written); renewing then stops.
    """

    __slots__ = ("_journal", "_on_lost", "_runs", "_timer", "owner")

    def __init__(self, journal: Journal, on_lost: Callable[[JournalError], None]) -> None:
        self.owner = Owner.here()
        self._journal = journal
        self._on_lost = on_lost
        self._runs: set[str] = set()  # unfinished runs leased here: renewal goes on while any
        self._timer: asyncio.TimerHandle | None = None

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
        self._journal.acquire(run_id, self.owner)
        self._hold(run_id)

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hold(self, run_id: str) -> None:
        self._runs.add(run_id)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LEASE_RENEW_S, self._renew)

    def _renew(self) -> None:
        self._timer = None
        if not self._runs:
            return
        try:
            self._journal.renew(self.owner)
        except JournalError as exc:
            self._on_lost(exc)
            return
        self._timer = asyncio.get_running_loop().call_later(LEASE_RENEW_S, self._renew)
