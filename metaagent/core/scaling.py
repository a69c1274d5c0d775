"""The pool policy: when to spawn agent instances, when to terminate them. Pure.

Scale up when the ready queue of a capability is deeper than ``spawn_threshold`` and limits
allow (``max_agents``, a spec's ``max_instances``, and the concurrency limits: a slot that could
not run anything is not spawned), with the spec that serves that capability best; scale down
instances idle for ``idle_timeout_s``, never below a spec's ``min_instances``.

The pool does not flap: it grows above the threshold and shrinks only when its capabilities
have no queue at all (hysteresis), and a cooldown per spec stops an action opposite to the
last one (no shrinking within ``cooldown_s`` of any action, no growing within ``cooldown_s`` of
a shrink). Growth may go on round after round while the queue stays deep: instances still
starting count as capacity on its way, so a round never asks again for what is coming.

``plan(view, policy, now)`` takes one frozen ``ScaleView`` and returns the actions;
``next_change(view, policy)`` says when time alone would change them. The rule families live
in ``scaling_grow`` and ``scaling_shrink``, the snapshot and the actions in ``scaling_view``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metaagent.core.scaling_grow import grow, growth_due
from metaagent.core.scaling_shrink import shrink, shrink_due
from metaagent.core.scaling_view import InstanceView, ScaleAction, ScaleView, Smoothed, SpecView

__all__ = [
    "InstanceView",
    "PoolPolicy",
    "ScaleAction",
    "ScaleView",
    "Smoothed",
    "SpecView",
    "next_change",
    "plan",
]


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """Thresholds of the pool (the requirements' defaults). Units are in the names."""

    max_agents: int = 50  # instances over all specs
    spawn_threshold: int = 5  # queue depth of a capability above which the pool grows
    idle_timeout_s: float = 60.0  # an instance idle this long may be terminated
    cooldown_s: float = 5.0  # no action opposite to a spec's last one sooner than this
    max_spawn_per_tick: int = 8  # spawns per decision round, so a burst does not overshoot
    # Sustained growth: the queue's time-average (this time constant) must be above the
    # threshold too, so a momentary spike does not add instances. 0: the depth right now.
    scale_up_window_s: float = 5.0
    # Retire idle instances while the spec's busy slots (time-averaged over
    # ``utilisation_window_s``) would fill fewer instances to this share. 0: never.
    target_utilisation: float = 0.9
    utilisation_window_s: float = 20.0

    def problems(self) -> list[str]:
        out = []
        if self.max_agents < 1:
            out.append(f"max_agents must be at least 1, got {self.max_agents}")
        if self.spawn_threshold < 0:
            out.append(f"spawn_threshold must be at least 0, got {self.spawn_threshold}")
        if self.idle_timeout_s <= 0:
            out.append(f"idle_timeout_s must be positive, got {self.idle_timeout_s}")
        if self.cooldown_s < 0:
            out.append(f"cooldown_s must be at least 0, got {self.cooldown_s}")
        if self.max_spawn_per_tick < 1:
            out.append(f"max_spawn_per_tick must be at least 1, got {self.max_spawn_per_tick}")
        if self.scale_up_window_s < 0:
            out.append(f"scale_up_window_s must be at least 0, got {self.scale_up_window_s}")
        if not 0 <= self.target_utilisation <= 1:
            out.append(f"target_utilisation must be within 0..1, got {self.target_utilisation}")
        if self.utilisation_window_s < 0:
            out.append(f"utilisation_window_s must be at least 0, got {self.utilisation_window_s}")
        return out


def plan(view: ScaleView, policy: PoolPolicy, now: float) -> list[ScaleAction]:
    """Scale actions for ``now``: growth first (the deepest queues first), then the shrinks of
    the specs that did not grow this round."""
    growth = grow(view, policy, now)
    return [*growth, *shrink(view, policy, now, {a.spec for a in growth})]


def next_change(view: ScaleView, policy: PoolPolicy) -> float | None:
    """The earliest time at which ``plan`` may act on the same view because time passed: a
    deep queue's average rises above the threshold, the cooldown after a shrink or the
    back-off after a loss ends while a queue is deep (or not served at all), an idle instance
    reaches the idle timeout, or the busy slots' average falls enough to make an idle instance
    spare. None when only a new event (a task, a result, an instance) can change the plan: the
    caller ticks after each event anyway.
    """
    wake = min((_due(s, view, policy) for s in view.specs), default=math.inf)
    return None if wake == math.inf else wake


def _due(s: SpecView, view: ScaleView, policy: PoolPolicy) -> float:
    """When a rule next comes due for ``s``: a spec a queue asks to grow is not shrunk."""
    due = growth_due(s, view, policy)
    return shrink_due(s, view, policy) if due is None else due
