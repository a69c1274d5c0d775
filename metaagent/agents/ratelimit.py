"""Rate limits per provider key for LLM agents: requests and tokens per sliding minute.

Every LLM agent that calls the same endpoint with the same API key variable shares one
``ProviderLimiter`` (``limiter_for``), so agents on one key cannot together pass the provider's
limits. A request waits until the last minute holds fewer than ``requests_per_min`` requests
and fewer than ``tokens_per_min`` tokens; a request's tokens are known, and counted, once it
answers (so requests started together may pass the token limit by what they use). When two
agents on one key give different limits, the lower applies. The clock and the wait are
injected, so tests run on virtual time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from metaagent.agents.llm import LlmConfig

__all__ = ["ProviderLimiter", "admit", "limiter_for"]

WINDOW_S = 60.0

N = TypeVar("N", int, float)


class ProviderLimiter:
    """Requests and their tokens over the last minute, for one provider key."""

    __slots__ = ("_clock", "_sleep", "_window", "requests_per_min", "tokens_per_min", "waited_s")

    def __init__(
        self,
        requests_per_min: float | None = None,
        tokens_per_min: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.requests_per_min = requests_per_min
        self.tokens_per_min = tokens_per_min
        self._clock = clock
        self._sleep = sleep
        self._window: deque[list[float]] = deque()  # [started at, tokens] per request
        self.waited_s = 0.0  # time requests spent waiting here, in all

    def tighten(self, requests_per_min: float | None, tokens_per_min: int | None) -> None:
        """Take the lower of the limits known and those given (another agent on this key)."""
        self.requests_per_min = _lower(self.requests_per_min, requests_per_min)
        self.tokens_per_min = _lower(self.tokens_per_min, tokens_per_min)

    async def acquire(self) -> list[float]:
        """Wait until a request may go; the request's entry, for ``spent``."""
        while (wait := self._wait_s(self._clock())) > 0:
            self.waited_s += wait
            await self._sleep(wait)
        entry = [self._clock(), 0.0]
        self._window.append(entry)
        return entry

    @staticmethod
    def spent(entry: list[float], tokens: int) -> None:
        """The request of ``entry`` answered, having used ``tokens``."""
        entry[1] = float(tokens)

    def _wait_s(self, now: float) -> float:
        window = self._window
        while window and window[0][0] <= now - WINDOW_S:
            window.popleft()
        if not window:
            return 0.0
        rpm, tpm = self.requests_per_min, self.tokens_per_min
        full = (rpm is not None and len(window) >= rpm) or (
            tpm is not None and sum(e[1] for e in window) >= tpm
        )
        return window[0][0] + WINDOW_S - now if full else 0.0


def _lower(a: N | None, b: N | None) -> N | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


_LIMITERS: dict[tuple[str, str], ProviderLimiter] = {}


def limiter_for(
    url: str,
    key_env: str,
    requests_per_min: float | None,
    tokens_per_min: int | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ProviderLimiter | None:
    """The limiter shared by the agents calling ``url`` with the key in ``key_env`` (None while
    no agent on that key set a limit); made with ``clock`` and ``sleep`` by the first agent
    that sets one. Agents look it up for each request, so one without limits of its own is
    held to those another agent on its key set."""
    key = (url, key_env)
    found = _LIMITERS.get(key)
    if found is not None:
        found.tighten(requests_per_min, tokens_per_min)
        return found
    if requests_per_min is None and tokens_per_min is None:
        return None
    made = _LIMITERS[key] = ProviderLimiter(
        requests_per_min, tokens_per_min, clock=clock, sleep=sleep
    )
    return made


async def admit(
    cfg: LlmConfig, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> list[float] | None:
    """Wait until a request of an agent of ``cfg`` may go; its entry (None: no limits)."""
    limiter = limiter_for(
        cfg.url, cfg.key_env, cfg.requests_per_min, cfg.tokens_per_min, clock=clock, sleep=sleep
    )
    return None if limiter is None else await limiter.acquire()
