"""Per-spec rate limits: the attempts a spec started in the last minute. Pure.

A spec with ``rate_per_min`` set is throttled once that many attempts started within a sliding
minute, until the oldest of them is a minute old.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 60.0  # a rate is per minute


@dataclass(slots=True)
class RateWindow:
    """One spec's attempt starts within the last minute, and whether its rate is spent."""

    calls: deque[float] = field(default_factory=deque)  # attempt starts in the last minute
    throttled_until: float | None = None

    @property
    def throttled(self) -> bool:
        return self.throttled_until is not None

    def start(self, now: float, rate: float) -> float | None:
        """Count an attempt started at ``now``; the time the throttle ends, if it begins now."""
        calls = self.calls
        calls.append(now)
        while calls and calls[0] <= now - WINDOW_S:
            calls.popleft()
        if len(calls) >= rate and self.throttled_until is None:
            self.throttled_until = calls[0] + WINDOW_S
            return self.throttled_until
        return None

    def release(self) -> None:
        """The throttle's minute is over: the spec may start attempts again."""
        self.throttled_until = None
