"""Live progress: events a run publishes, and the subscription that streams them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from metaagent.core.decisions import Decision

EventKind = Literal["task", "decision", "run"]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in a run. ``at`` is seconds since the run started.

    ``kind`` is ``task`` (a task changed state: ``state`` and ``agent`` say how), ``decision``
    (``decision`` holds it) or ``run`` (the run finished).
    """

    kind: EventKind
    at: float
    run_id: str
    task_id: str | None = None
    state: str | None = None
    agent: str | None = None
    detail: str | None = None
    decision: Decision | None = None


class Subscription:
    """An async iterator of a run's events from the moment it was created until the run ends."""

    __slots__ = ("_closed", "_queue")

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._closed = False

    def put(self, event: Event) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event
