"""Retry back-off: a pure function of the attempt number and a seeded random source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter: ``base_s * 2**(n-1)``, capped at ``max_s``."""

    base_s: float = 0.25
    max_s: float = 30.0
    jitter: float = 0.1  # fraction of the delay added at random, so retries do not stampede


def compute_backoff(policy: RetryPolicy, failed_attempt: int, rng: random.Random) -> float:
    """Delay in seconds before the attempt after ``failed_attempt`` (1-based) may start."""
    delay = min(policy.max_s, policy.base_s * 2.0 ** max(0, failed_attempt - 1))
    if policy.jitter:
        delay += delay * policy.jitter * rng.random()
    return delay
