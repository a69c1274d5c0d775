"""The growth rules of the pool policy: a sustained queue grows the spec that serves it best. Pure.

A capability's queue grows the pool when it is deeper than ``spawn_threshold`` now and on
average (``scale_up_window_s``), or at once when no instance offers the capability at all. The
slots already on their way (free, starting, decided this round) count first; the concurrency
limits, ``max_instances``, ``max_agents`` and ``max_spawn_per_tick`` bound what is added; a
spec does not grow within ``cooldown_s`` of a shrink nor within the back-off after a loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.scaling_view import ScaleAction

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.scaling import PoolPolicy
    from metaagent.core.scaling_view import ScaleView, SpecView


@dataclass(slots=True)
class Budget:
    """What one round of growth may still add, and what it added so far (instances per spec)."""

    agents: int  # instances under max_agents
    spawns: int  # spawns under max_spawn_per_tick
    attempts: float  # attempts the concurrency limits let run (inf: no limit)
    grown: dict[str, int] = field(default_factory=dict)

    def added(self, s: SpecView) -> int:
        return self.grown.get(s.name, 0)

    def take(self, s: SpecView, k: int) -> None:
        self.grown[s.name] = self.added(s) + k
        self.agents -= k
        self.spawns -= k
        self.attempts -= k * s.slots


def sustained_at(cap: str, view: ScaleView, policy: PoolPolicy) -> float:
    """From when on the queue of ``cap`` counts as deep: its depth and, when ``view.sustained``
    holds it, its time-average over ``scale_up_window_s`` above the threshold (inf: not while
    it holds)."""
    threshold = policy.spawn_threshold
    if view.depth.get(cap, 0) <= threshold:
        return math.inf
    avg = view.sustained.get(cap)
    if avg is None or policy.scale_up_window_s <= 0:
        return -math.inf
    return avg.rises_to(threshold, policy.scale_up_window_s)


def coming_slots(serving: Sequence[SpecView], budget: Budget, free: int) -> int:
    """Slots that will take from a queue before any new one could: ``free`` ones, ones still
    starting, ones decided this round (for another capability) on the specs ``serving`` it."""
    starting = sum(s.slots for s in serving for i in s.instances if i.starting)
    return starting + sum(budget.added(s) * s.slots for s in serving) + free


def wanted_slots(n: int, coming: int, allowed: float, threshold: int, unserved: bool) -> float:
    """New slots a queue of ``n`` asks for: enough to bring it down to ``threshold``, no more
    than the ``allowed`` attempts can use; at least one for a queue nobody serves."""
    want = min(n - coming - threshold, allowed - coming)
    if unserved and coming == 0 and allowed > 0:
        want = max(want, 1)
    return want


def may_grow(s: SpecView, added: int, policy: PoolPolicy, now: float) -> bool:
    """Whether ``s`` may take one more instance at ``now``, ``added`` already this round: below
    ``max_instances``, past the cooldown of its last shrink and the back-off after a loss."""
    return (
        len(s.instances) + added < s.max_instances
        and now - s.last_shrink_at >= policy.cooldown_s
        and now >= s.hold_until
    )


def best_spec(candidates: Sequence[SpecView], cap: str) -> SpecView | None:
    """The most proficient at ``cap``; on a tie the smaller pool, then the name."""
    if not candidates:
        return None
    return max(candidates, key=lambda s: (s.capabilities[cap], -len(s.instances), s.name))


def grow_reason(
    cap: str, n: int, coming: int, best: SpecView, view: ScaleView, policy: PoolPolicy
) -> str:
    threshold = policy.spawn_threshold
    if n <= threshold:
        why = f"{n} tasks of {cap!r} wait and no instance offers it"
    else:
        averaged = cap in view.sustained and policy.scale_up_window_s > 0
        held = f" (averaged over {policy.scale_up_window_s:g}s)" if averaged else ""
        why = f"queue depth of {cap!r} is {n} > spawn threshold {threshold}{held}"
        why += f" ({coming} slots free or starting)" if coming else ""
    return f"{why}; {best.name} serves it best (proficiency {best.capabilities[cap]:.2f})"


def grow_queue(
    cap: str, n: int, view: ScaleView, policy: PoolPolicy, now: float, budget: Budget
) -> ScaleAction | None:
    """Growth for the queue of ``cap`` (``n`` ready tasks), taken from ``budget``."""
    serving = [s for s in view.specs if cap in s.capabilities]
    unserved = not view.is_served(cap)
    if not unserved and now < sustained_at(cap, view, policy):
        return None
    coming = coming_slots(serving, budget, view.free.get(cap, 0))
    allowed = min(budget.attempts, view.room.get(cap, math.inf))
    budget.attempts -= min(n, coming)  # what the slots on their way will run
    want = wanted_slots(n, coming, allowed, policy.spawn_threshold, unserved)
    if want <= 0 or budget.agents <= 0 or budget.spawns <= 0:
        return None
    best = best_spec([s for s in serving if may_grow(s, budget.added(s), policy, now)], cap)
    if best is None:
        return None
    k = min(
        math.ceil(want / best.slots),
        best.max_instances - len(best.instances) - budget.added(best),
        budget.agents,
        budget.spawns,
    )
    budget.take(best, k)
    return ScaleAction(best.name, k, grow_reason(cap, n, coming, best, view, policy))


def grow(view: ScaleView, policy: PoolPolicy, now: float) -> list[ScaleAction]:
    """Growth at ``now``: the deepest queues first, each with the spec that serves it best."""
    budget = Budget(policy.max_agents - view.instances, policy.max_spawn_per_tick, view.room_total)
    actions = []
    for cap, n in sorted(view.depth.items(), key=lambda kv: (-kv[1], kv[0])):
        action = grow_queue(cap, n, view, policy, now, budget) if n > 0 else None
        if action is not None:
            actions.append(action)
    return actions


def deep_since(s: SpecView, view: ScaleView, policy: PoolPolicy) -> float:
    """From when on a queue of ``s`` asks for growth (-inf: a queue nobody serves; inf: none).

    A queue counts as served here unless ``view.served`` is given and leaves it out: the
    default ``plan`` reads (the instances in ``specs``) is not applied to the wake-up time.
    """
    served = view.served
    return min(
        (
            -math.inf
            if view.depth.get(cap, 0) > 0 and served is not None and cap not in served
            else sustained_at(cap, view, policy)
            for cap in s.capabilities
        ),
        default=math.inf,
    )


def growth_due(s: SpecView, view: ScaleView, policy: PoolPolicy) -> float | None:
    """When the growth of ``s`` next comes due by time alone; None when no queue of its asks
    for growth (its shrink rules decide), inf when only an event can help.

    Growth waits on the queue's average, a shrink's cooldown or a loss's back-off; already due
    (-inf) means ``plan`` acted or decided not to on the same view: events, not time, move it.
    """
    since = deep_since(s, view, policy)
    if since == math.inf:
        return None
    due = max(since, s.last_shrink_at + policy.cooldown_s, s.hold_until)
    return due if len(s.instances) < s.max_instances and due > -math.inf else math.inf
