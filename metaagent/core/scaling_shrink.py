"""The shrink rules of the pool policy: retire idle instances, never below ``min_instances``. Pure.

Only idle instances go, the longest idle first, and only while none of the spec's capabilities
has a queue (hysteresis) and ``cooldown_s`` has passed since its last action. Two rules say how
many: the idle timeout (idle for ``idle_timeout_s``), and the target utilisation (the spec's
busy slots, time-averaged, would keep one instance fewer at least ``target_utilisation`` busy).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from metaagent.core.scaling_view import ScaleAction

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from metaagent.core.scaling import PoolPolicy
    from metaagent.core.scaling_view import InstanceView, ScaleView, Smoothed, SpecView


def idle_instances(s: SpecView) -> list[InstanceView]:
    """The instances of ``s`` that may be retired (idle, started), the longest idle first."""
    idle = (i for i in s.instances if i.running == 0 and not i.starting)
    return sorted(idle, key=lambda i: (i.idle_since, i.id))


def timed_out(idle: Sequence[InstanceView], policy: PoolPolicy, now: float) -> int:
    """How many of ``idle`` have been idle for at least ``idle_timeout_s`` at ``now``."""
    return sum(1 for i in idle if now - i.idle_since >= policy.idle_timeout_s)


def _target_busy(s: SpecView, policy: PoolPolicy) -> Smoothed | None:
    """The busy slots the target rule reads; None when it does not apply (the busy slots not
    known, no target, nothing running)."""
    busy = s.busy
    if busy is None or policy.target_utilisation <= 0 or busy.level <= 0:
        return None
    return busy


def surplus(s: SpecView, policy: PoolPolicy, now: float) -> int:
    """How many instances of ``s`` the target-utilisation rule finds spare at ``now``.

    While the spec runs work, an instance is spare when its attempts (now and time-averaged
    over ``utilisation_window_s``) would keep one instance fewer at least ``target_utilisation``
    busy. Never below ``min_instances``. The caller holds the rule while a queue waits.
    """
    busy = _target_busy(s, policy)
    if busy is None:
        return 0
    target, window = policy.target_utilisation, policy.utilisation_window_s
    n = len(s.instances)
    k = 0
    while k < n - s.min_instances and now >= busy.falls_to(target * s.slots * (n - k - 1), window):
        k += 1
    return k


def _target_reason(s: SpecView, kept: int, policy: PoolPolicy, now: float) -> str:
    assert s.busy is not None  # the target rule retired some
    load = s.busy.average(now, policy.utilisation_window_s)
    return (
        f"{load:.1f} busy slots (averaged over {policy.utilisation_window_s:g}s) "
        f"keep {kept} instances at least "
        f"{policy.target_utilisation:.0%} busy (target utilisation; "
        f"keeping min_instances={s.min_instances})"
    )


def _idle_reason(s: SpecView, policy: PoolPolicy) -> str:
    return (
        f"idle for at least {policy.idle_timeout_s:g}s with no queued work "
        f"(keeping min_instances={s.min_instances})"
    )


def shrink_spec(s: SpecView, view: ScaleView, policy: PoolPolicy, now: float) -> ScaleAction | None:
    """The shrink of ``s`` at ``now``, if any: the larger of the two rules' counts."""
    spare = len(s.instances) - s.min_instances
    if now - s.last_action_at < policy.cooldown_s or spare <= 0 or view.queued(s):
        return None
    idle = idle_instances(s)
    by_timeout = timed_out(idle, policy, now)
    by_target = min(surplus(s, policy, now), len(idle))
    count = min(spare, max(by_timeout, by_target))
    if count <= 0:
        return None
    if by_target > by_timeout:
        reason = _target_reason(s, len(s.instances) - count, policy, now)
    else:
        reason = _idle_reason(s, policy)
    victims = tuple(i.id for i in idle[:count])
    return ScaleAction(s.name, -len(victims), reason, victims)


def shrink(
    view: ScaleView, policy: PoolPolicy, now: float, grown: Collection[str]
) -> list[ScaleAction]:
    """Shrinks at ``now`` of the specs not in ``grown`` (those growing this round)."""
    actions = (shrink_spec(s, view, policy, now) for s in view.specs if s.name not in grown)
    return [a for a in actions if a is not None]


def idle_timeout_due(idle: Sequence[InstanceView], policy: PoolPolicy) -> float:
    """When the longest idle of ``idle`` reaches the idle timeout (inf: none idle)."""
    return min((i.idle_since for i in idle), default=math.inf) + policy.idle_timeout_s


def target_due(s: SpecView, policy: PoolPolicy) -> float:
    """When the busy slots' average has fallen enough to make one instance spare (inf: never
    while they hold)."""
    busy = _target_busy(s, policy)
    if busy is None:
        return math.inf
    bound = policy.target_utilisation * s.slots * (len(s.instances) - 1)
    return busy.falls_to(bound, policy.utilisation_window_s)


def shrink_due(s: SpecView, view: ScaleView, policy: PoolPolicy) -> float:
    """When a shrink rule next comes due for ``s`` by time alone (inf: only an event can make
    one): the idle timeout or the target rule, once its cooldown is over."""
    if len(s.instances) <= s.min_instances or view.queued(s):
        return math.inf
    idle = idle_instances(s)
    if not idle:
        return math.inf
    at = min(idle_timeout_due(idle, policy), target_due(s, policy))
    return max(at, s.last_action_at + policy.cooldown_s)
