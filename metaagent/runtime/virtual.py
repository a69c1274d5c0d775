"""Virtual time for the runtime: an event loop whose clock is a ``ManualClock``.

In the manner of trio's ``MockClock`` with autojump: the loop asks its clock how long to sleep,
and when nothing is ready to run and no I/O arrives, the clock *jumps* to the next timer instead
of the process sleeping. Every wait of the runtime (retry back-offs, timeouts, heartbeats, idle
timeouts) is a loop timer, so an orchestrator built with the same clock runs hours of waiting
in no real time: ``run_virtual(main(), clock=clock)``.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import TYPE_CHECKING, TypeVar

from metaagent.clock import ManualClock

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping
    from typing import Any

    from _typeshed import FileDescriptorLike

_T = TypeVar("_T")


class _JumpingSelector(selectors.BaseSelector):
    """A selector that, when a wait for I/O finds none, moves the clock over the wait."""

    def __init__(self, clock: ManualClock, threshold_s: float) -> None:
        self._inner = selectors.DefaultSelector()
        self._clock = clock
        self._threshold_s = threshold_s

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # ``timeout`` is how long the loop would sleep: until its next timer (None: no timer).
        if timeout is None or timeout <= 0:
            return self._inner.select(timeout)
        events = self._inner.select(min(timeout, self._threshold_s))
        if not events:
            self._clock.advance(timeout)
        return events

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on ``clock``'s time that jumps the clock instead of sleeping.

    ``autojump_threshold_s`` is how long (real seconds) the loop waits for I/O before it jumps:
    0 suits code that only waits on the loop (coroutine agents, timers); code that waits on
    real processes or sockets needs a threshold longer than their answers take, or their
    timeouts pass in virtual time while they work.
    """

    virtual_time = True  # work on other threads is not waited for: keep it on the loop

    def __init__(self, clock: ManualClock, *, autojump_threshold_s: float = 0.0) -> None:
        self.clock = clock
        super().__init__(_JumpingSelector(clock, autojump_threshold_s))
        if autojump_threshold_s < 0:
            self.close()
            raise ValueError(f"autojump_threshold_s must be >= 0, got {autojump_threshold_s}")

    def time(self) -> float:
        return self.clock.now()


def run_virtual(
    main: Coroutine[Any, Any, _T],
    *,
    clock: ManualClock | None = None,
    autojump_threshold_s: float = 0.0,
) -> _T:
    """Run ``main`` to completion on a ``VirtualTimeLoop`` (as ``asyncio.run`` does on a real
    loop). Give the orchestrator under test the same ``clock``."""
    loop = VirtualTimeLoop(clock or ManualClock(), autojump_threshold_s=autojump_threshold_s)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(main)
