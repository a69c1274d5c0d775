"""Soft fallback priced: what a retry on a spec that already failed the task is expected to cost.

A failed attempt says something about the next one on the same spec. When failures are
*independent* (a flaky network, a sampled answer that was wrong this time), a repeat succeeds
as often as a first try; when they are *correlated* (the agent cannot do this task: it raises
the same error every time), it does not. Which world a pool lives in is learned, per spec and
capability, from the repeats it has seen:

    factor = P(success | the spec already failed this task) / P(success)

estimated as ``(successes of repeats + k * prior) / (their expected successes + k)``: the
repeats' successes against what a first try would have achieved (the sum of their expected
successes ``p`` when they ran), shrunk towards a prior worth ``k`` expected successes, and
at most 1 (a failure is no evidence that the agent got better). The prior of one spec is the
pool's factor (every spec's repeats, pooled, shrunk towards ``PRIOR_FACTOR``): a pool whose
agents fail at random learns it from any of them.

The router prices the repeat at ``p_again = factor * p``, so its expected time to success
``run / p_again`` grows as the failures correlate, and it pays the back-off again (the
``penalty`` part): the minimum cost that keeps an agent which fails at once from looking
free. Nothing is forbidden: with no evidence (factor 0.5, a repeat is half as likely to
succeed) a failed spec takes its retry back only when every other capable spec is about
twice as slow or busy for longer; with repeats that failed, it is left alone; with repeats
that succeeded as often as first tries, it competes at its plain price.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

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


def why(
    winner: str,
    score: float,
    repeats: tuple[tuple[str, float, float, float, int], ...],
    avoid: Collection[str],
    penalty_s: float,
) -> str:
    """The route's reason for a retry: why each spec that failed the task was or was not taken
    back (``Choice.repeats``: spec, score, success of a repeat, factor, repeats seen)."""
    parts = []
    seen = set()
    for spec, s, p, phi, n in repeats:
        seen.add(spec)
        learned = f"learned from {n} repeats" if n else "the prior: no repeat of it seen yet"
        terms = (f"a repeat there succeeds {p:.2f}, {phi:.2f} of a first try ({learned}), and "
                 f"pays the back-off ({penalty_s:.3g}s) again")  # fmt: skip
        if spec == winner:
            parts.append(f"back on {spec}, which failed it: {terms}; still the cheapest")
        else:
            parts.append(f"not back on {spec}, which failed it: {terms}: {-s:.3g}s against "
                         f"{-score:.3g}s")  # fmt: skip
    for spec in sorted(set(avoid) - seen):
        parts.append(f"{spec}, which failed it, cannot take it now")
    return "; " + "; ".join(parts) + " (penalised by the back-off, not barred)"
