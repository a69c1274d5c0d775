"""What a failure says of the next attempt on the same spec: the repeat factor's estimate.

``factor = P(success | the spec already failed this task) / P(success)``, estimated from the
repeats seen: their successes against the successes first tries would have had, shrunk towards
a prior. ``core.learning`` keeps the counts; ``core.routing.repeat`` prices a retry with it.
"""

from __future__ import annotations

__all__ = ["PRIOR_FACTOR", "PRIOR_WEIGHT", "expected_success", "factor"]

PRIOR_FACTOR = 0.5  # with no evidence, a repeat succeeds half as often as a first try
PRIOR_WEIGHT = 2.0  # the prior is worth this many expected successes
_MIN_FACTOR = 0.02  # never quite zero: a repeat stays a (very) last resort, priced finitely


def factor(ok: float, expected: float, prior: float, weight: float = PRIOR_WEIGHT) -> float:
    """The repeat factor from ``ok`` successes of repeats that were ``expected`` to succeed
    that often had they been first tries, shrunk towards ``prior`` (worth ``weight``)."""
    value = (ok + weight * prior) / (expected + weight)
    return _MIN_FACTOR if value < _MIN_FACTOR else 1.0 if value > 1.0 else value


def expected_success(
    successes: int, failures: int, declared: float, strength: float, complexity: float, prof: float
) -> float:
    """The success a first try of this spec was expected to have (as the router computes it:
    the Beta posterior mean, times the fit of a hard task to a weak agent)."""
    a = 1.0 + strength * declared + successes
    b = 1.0 + strength * (1.0 - declared) + failures
    p = a / (a + b)
    if complexity > prof:
        p *= 1.0 - (complexity - prof)
    return p
