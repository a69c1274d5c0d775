"""Baseline routing policies, to measure the scored router against: pure and seeded.

Each is a ``Chooser`` for ``Router.chooser``: given a task and the free instances that may take
it, return one (or ``None`` to leave the task queued). ``oracle`` knows what the router can only
learn: every agent's true success rate and speed.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.instances import AgentInstance
    from metaagent.core.routing.router import Chooser
    from metaagent.core.tasks import AgentTask


def random_choice(seed: int = 0) -> Chooser:
    """Any free instance, uniformly at random."""
    rng = random.Random(seed)

    def choose(task: AgentTask, free: Sequence[AgentInstance]) -> AgentInstance | None:
        return free[rng.randrange(len(free))] if free else None

    return choose


def round_robin() -> Chooser:
    """Per capability, the next instance in a fixed cycle over every instance seen, skipping
    busy ones."""
    order: dict[str, list[str]] = {}
    turn: dict[str, int] = {}

    def choose(task: AgentTask, free: Sequence[AgentInstance]) -> AgentInstance | None:
        if not free:
            return None
        cap = task.capability
        cycle = order.setdefault(cap, [])
        for inst in free:
            if inst.id not in cycle:
                cycle.append(inst.id)
        by_id = {i.id: i for i in free}
        start = turn.get(cap, 0)
        for k in range(len(cycle)):
            iid = cycle[(start + k) % len(cycle)]
            if iid in by_id:
                turn[cap] = (start + k + 1) % len(cycle)
                return by_id[iid]
        return None  # unreachable: every free instance is in the cycle

    return choose


def least_loaded() -> Chooser:
    """The free instance with the smallest share of its slots in use; ties go to the one that
    has run the fewest attempts, then to the first listed."""

    def choose(task: AgentTask, free: Sequence[AgentInstance]) -> AgentInstance | None:
        if not free:
            return None
        return min(free, key=lambda i: (i.running / i.slots, i.tasks_done))

    return choose


def oracle(truth: Callable[[str, str], tuple[float, float]]) -> Chooser:
    """The free instance with the highest true success rate, then the shortest true mean
    duration. ``truth(spec, capability)`` returns ``(success_rate, mean_duration_s)``.

    It chooses among the same free instances as every other policy: it knows more, it does not
    wait for a better agent to come free.
    """
    cache: dict[tuple[str, str], tuple[float, float]] = {}

    def value(spec: str, cap: str) -> tuple[float, float]:
        key = (spec, cap)
        v = cache.get(key)
        if v is None:
            p, d = truth(spec, cap)
            v = cache[key] = (-p, d)
        return v

    def choose(task: AgentTask, free: Sequence[AgentInstance]) -> AgentInstance | None:
        if not free:
            return None
        cap = task.capability
        return min(free, key=lambda i: (value(i.spec.name, cap), i.running / i.slots))

    return choose
