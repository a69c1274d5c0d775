"""The router as it was before earliest-expected-finish routing, kept as a baseline policy.

A ``Chooser`` over the *free* instances only (the router hands a chooser the free instances of
the specs a retry does not avoid: the old hard fallback), scoring at most ``max_candidates`` of
them, strongest declared proficiency first, with the old weighted parts: ``capability``
(proficiency moved by evidence), ``fit`` (hard tasks need strong agents), ``load`` (free share of
the instance's slots), ``success`` (Beta posterior mean) and ``speed`` (learned duration against
the capability's mean). It never waits and never prices scarcity. ``bench hetero`` and
``bench learning`` measure the new router against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.instances import AgentInstance
    from metaagent.core.learning import Learning
    from metaagent.core.routing.router import Chooser
    from metaagent.core.tasks import AgentTask


@dataclass(frozen=True, slots=True)
class LegacyWeights:
    """The old default weights of the score's parts."""

    capability: float = 0.35
    fit: float = 0.15
    load: float = 0.20
    success: float = 0.20
    speed: float = 0.10


def previous_router(
    learning: Learning, weights: LegacyWeights | None = None, max_candidates: int = 32
) -> Chooser:
    """The old scored choice among free instances, reading ``learning`` as it was read."""
    w = weights or LegacyWeights()

    def score(task: AgentTask, inst: AgentInstance) -> float:
        cap = task.capability
        spec = inst.spec
        declared = spec.capabilities[cap]
        prof = learning.proficiency(spec.name, cap, declared)
        fit = 1.0 - (task.complexity - prof if task.complexity > prof else 0.0)
        load = 1.0 - inst.running / inst.slots
        ps = learning.prior_strength
        a = 1.0 + ps * declared
        b = 1.0 + ps * (1.0 - declared)
        arm = learning.arms.get((spec.name, cap))
        speed = 0.5
        if arm is not None:
            a += arm.successes
            b += arm.failures
            if arm.durations:
                mine = arm.mean_duration_s
                ref = learning.capability_duration(cap) or mine
                speed = ref / (ref + mine) if ref + mine > 0 else 0.5
        success = a / (a + b)
        return (
            w.capability * prof + w.fit * fit + w.load * load + w.success * success
            + w.speed * speed
        )  # fmt: skip

    def choose(task: AgentTask, free: Sequence[AgentInstance]) -> AgentInstance | None:
        if not free:
            return None
        cap = task.capability
        ordered = sorted(free, key=lambda i: -i.spec.capabilities[cap])[:max_candidates]
        best = ordered[0]
        best_score = score(task, best)
        for inst in ordered[1:]:
            s = score(task, inst)
            if s > best_score:
                best, best_score = inst, s
        return best

    return choose
