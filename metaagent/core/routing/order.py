"""The router's orderings besides the weighted cost: the objective
``cheapest_meeting`` (the cheapest spec whose expected success for the task reaches a target)
with the success of a complexity band, and the runners-up a decision keeps.

The objective ``cheapest_meeting`` (``RoutingWeights.objective``) orders the same candidates
otherwise: those whose expected success for this task reaches ``quality_target`` come first,
the cheapest expected cost per attempt first (ties by the weighted cost of ``core.routing``);
when none does, the one of the best expected success. There ``p`` is read for the task's
complexity: the spec's successes and failures in the task's complexity band
(``Learning.bands``) move ``p`` (the prior, worth ``prior_strength`` attempts), so an agent
learns to be good on easy tasks and bad on hard ones. Quarantine, ``min_proficiency`` and the
soft fallback apply as before; the visit is not pruned (the bound is of the weighted cost,
not of the price).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.learning import band_counts

if TYPE_CHECKING:
    from collections.abc import Callable

    from metaagent.core.instances import AgentInstance
    from metaagent.core.routing.router import Parts
    from metaagent.core.spec_entry import SpecEntry


def banded(
    p: float,
    counts: list[int] | None,
    band: int,
    strength: float,
    sample: Callable[[float, float], float] | None,
) -> float:
    """Success for the task's complexity band: the successes and failures that speak for it
    (``Learning.band``) move ``p``, worth ``strength`` attempts (a posterior sample in
    Thompson mode)."""
    if counts is None:
        return p
    ok, bad = band_counts(counts, band)
    if sample is not None:
        return sample(1.0 + strength * p + ok, 1.0 + strength * (1.0 - p) + bad)
    return (strength * p + ok) / (strength + ok + bad)


def cheapest_first(
    scored: list[tuple[float, int, SpecEntry, Parts]], target: float
) -> tuple[list[tuple[float, int, SpecEntry, Parts]], bool]:
    """``cheapest_meeting``: the candidates whose expected success reaches ``target`` first,
    cheapest expected cost first (ties by score); when none does, best expected success first.
    Also whether the first one reaches the target."""
    meets = [s for s in scored if s[3][5] >= target]
    if meets:
        meets.sort(key=_price_key)
        return meets + [s for s in scored if s[3][5] < target], True
    return sorted(scored, key=_success_key), False


def _price_key(s: tuple[float, int, SpecEntry, Parts]) -> tuple[float, float, int]:
    return s[3][6], -s[0], -s[1]


def _success_key(s: tuple[float, int, SpecEntry, Parts]) -> tuple[float, float, int]:
    return -s[3][5], -s[0], -s[1]


def ranked(
    scored: list[tuple[float, int, SpecEntry, Parts]], winner: AgentInstance | None
) -> tuple[tuple[str, float, tuple[float, ...]], ...]:
    """The best three: the winner by the instance it starts on (when it starts now), the
    others by spec."""
    out = [(s[2].name, s[0], s[3]) for s in scored[:3]]
    if winner is not None:
        out[0] = (winner.id, out[0][1], out[0][2])
    return tuple(out)
