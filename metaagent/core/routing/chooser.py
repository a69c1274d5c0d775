"""Baseline policies plugged into the router: a ``Chooser`` picks among free instances."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.routing.router import Choice

if TYPE_CHECKING:
    from collections.abc import Collection

    from metaagent.core.routing.router import Parts, Router
    from metaagent.core.tasks import AgentTask


def chosen(router: Router, task: AgentTask, avoid: Collection[str], floor: float) -> Choice | None:
    """Let the pluggable ``chooser`` (a baseline policy) pick among the free instances of
    the specs not avoided (every spec when all are)."""
    assert router.chooser is not None
    cap = task.capability
    entries = [e for e in router.entries_for(cap) if e.spec.capabilities[cap] >= floor]
    if avoid and not all(e.name in avoid for e in entries):
        entries = [e for e in entries if e.name not in avoid]
    free = [i for e in entries for i in e.free_insts]
    if not free:
        return None
    inst = router.chooser(task, free)
    if inst is None:
        return None
    entry = router.entry(inst.spec.name)
    unit = router.learning.units.get((entry.name, cap))
    run = (unit[1] if unit is not None else 1.0) * (0.5 + task.complexity)
    arm = router.learning.arms.get((entry.name, cap))
    price = arm.mean_cost_usd if arm is not None and arm.costs else entry.spec.cost_per_call_usd
    parts: Parts = (0.0, run, 0.0, 0.0, 0.0, 1.0, price or 0.0)
    return Choice(inst, entry, -run, parts, ((inst.id, -run, parts),), run)
