"""``RunHandle``: a submitted run as its submitter sees it — decisions, events, result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from metaagent.runtime.events import Event, Subscription

if TYPE_CHECKING:
    from metaagent.core.decisions import Decision
    from metaagent.report.batch import BatchResult


class RunOwner(Protocol):
    """What a handle asks of the orchestrator that runs it."""

    def batch_result(self, run_id: str) -> BatchResult: ...

    async def cancel(self, run_id: str, task_ids: Iterable[str] | None = None) -> None: ...


EventCallback = Callable[[Event], None]


class RunHandle:
    """A submitted run: its decisions so far, a live event stream and its final result."""

    def __init__(self, orch: RunOwner, run_id: str, name: str, started_at: float) -> None:
        self._orch = orch
        self.run_id = run_id
        self.name = name
        self.started_at = started_at
        self.decisions: list[Decision] = []
        self._subs: list[Subscription] = []
        self._callbacks: list[EventCallback] = []
        # Anyone subscribed: events are only built when someone listens. A plain attribute
        # (read on the hot path, once per output), set by the subscription methods only.
        self.listening = False
        self._done = asyncio.get_running_loop().create_future()

    def events(self) -> Subscription:
        """Subscribe now: the iterator yields every event from here on and ends with the run."""
        sub = Subscription()
        if self._done.done():
            sub.close()
        else:
            self._subs.append(sub)
            self.listening = True
        return sub

    def on_event(self, callback: EventCallback) -> None:
        """Call ``callback`` synchronously for every event from here on."""
        self._callbacks.append(callback)
        self.listening = True

    def publish(self, event: Event) -> None:
        for sub in self._subs:
            sub.put(event)
        for cb in self._callbacks:
            cb(event)

    def done(self) -> bool:
        return self._done.done()

    async def result(self) -> BatchResult:
        """Wait for every task to reach a terminal state; return the batch's result."""
        await asyncio.shield(self._done)
        return self._orch.batch_result(self.run_id)

    async def cancel(self, task_ids: Iterable[str] | None = None) -> None:
        await self._orch.cancel(self.run_id, task_ids)

    def settle(self, error: BaseException | None = None) -> None:
        """End the run for its waiters: ``result()`` returns, or raises ``error``. Called by the
        orchestrator that owns the run; later calls change nothing."""
        if not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)
                # Marked as seen: nobody may be awaiting this run, and the error is not lost
                # (result() raises it; the journal and the decisions keep the run's story).
                self._done.exception()
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        self.listening = bool(self._callbacks)
