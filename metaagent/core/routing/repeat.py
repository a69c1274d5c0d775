"""Soft fallback priced: what a retry on a spec that already failed the task is expected to cost.

A failed attempt says something about the next one on the same spec. When failures are
*independent* (a flaky network, a sampled answer that was wrong this time), a repeat succeeds
as often as a first try; when they are *correlated* (the agent cannot do this task: it raises
the same error every time), it does not. Which world a pool lives in is learned, per spec and
capability, from the repeats it has seen:

    factor = P(success | the spec already failed this task) / P(success)

estimated (``core.repeats``) as ``(successes of repeats + k * prior) / (their expected
successes + k)``: the repeats' successes against what a first try would have achieved (the
sum of their expected successes ``p`` when they ran), shrunk towards a prior worth ``k``
expected successes, and at most 1 (a failure is no evidence that the agent got better). The
prior of one spec is the pool's factor (every spec's repeats, pooled, shrunk towards
``repeats.PRIOR_FACTOR``): a pool whose agents fail at random learns it from any of them.

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

    from metaagent.core.learning import Learning
    from metaagent.core.routing.router import Parts, Router
    from metaagent.core.spec_entry import SpecEntry
    from metaagent.core.tasks import AgentTask

Repeat = tuple[str, float, float, float, int]  # spec, score, success of a repeat, factor, seen

_MIN_RUN_S = 1e-6  # as ``router``


def reprice(
    router: Router,
    scored: list[tuple[float, int, SpecEntry, Parts]],
    task: AgentTask,
    avoid: Collection[str],
    penalty_s: float,
    final: float,
    min_success: float,
) -> list[tuple[float, int, SpecEntry, Parts]]:
    """The router's scored candidates with each spec that failed ``task`` priced as a repeat:
    success ``factor * p``, run from its successful attempts (the capability's when it has
    none), scarcity scaled with the run, the back-off (``penalty_s``) paid again; best first.
    ``final`` multiplies the retry part's weight (a last attempt)."""
    w = router.weights
    learning = router.learning
    cap = task.capability
    wy = w.retry * final
    unit_cap = learning.capability_unit(cap)
    scale = 0.5 + task.complexity
    if task.estimate_s is not None:  # as the router scales an estimate (``_or_one``)
        scale = task.estimate_s / (1.0 if unit_cap is None else unit_cap)
    out = []
    for score, index, entry, parts in scored:
        if entry.name not in avoid:
            out.append((score, index, entry, parts))
            continue
        wait, run, _, scarce, _, p, price = parts
        unit = learning.success_unit(entry.name, cap)
        again = run if unit is None else max(unit, _MIN_RUN_S) * scale
        scarce = scarce * again / run if run > 0 else 0.0
        p = max(p * learning.repeat_factor(entry.name, cap)[0], min_success)
        retry = again * (1.0 - p) / p
        cost = (w.wait * wait + w.run * again + wy * retry + w.scarcity * scarce
                + w.penalty * penalty_s - w.success * p + w.cost * price)  # fmt: skip
        out.append((-cost, index, entry, (wait, again, retry, scarce, penalty_s, p, price)))
    out.sort(reverse=True)  # (score, -index) are unique: entries are never compared
    return out


def collect(
    learning: Learning,
    scored: list[tuple[float, int, SpecEntry, Parts]],
    avoid: Collection[str],
    capability: str,
) -> tuple[Repeat, ...]:
    """For a retry, each candidate spec that failed the task, as ``reprice`` priced it, best
    first (``Choice.repeats``): why it was or was not taken back."""
    out = []
    for score, _, entry, parts in scored:
        if entry.name in avoid:
            phi, n = learning.repeat_factor(entry.name, capability)
            out.append((entry.name, score, parts[5], phi, n))
    return tuple(out)


def why(
    winner: str,
    score: float,
    repeats: tuple[Repeat, ...],
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
