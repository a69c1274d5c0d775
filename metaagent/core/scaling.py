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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence


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


@dataclass(frozen=True, slots=True)
class Smoothed:
    """A signal that steps at events (a queue depth, busy slots) and its time-average.

    The signal has held ``level`` since ``at``, when the average was ``value``; from there the
    average moves toward the level exponentially, with the time constant ``window_s`` the
    caller passes (0: the average is the level). The default has been 0 forever. The answers
    are exact times, so ``plan`` (is it due now?) and ``next_change`` (when is it due?) agree.
    """

    level: float = 0.0
    value: float = 0.0
    at: float = -math.inf

    def average(self, now: float, window_s: float) -> float:
        if window_s <= 0 or self.at == -math.inf:
            return self.level
        w = math.exp(-max(0.0, now - self.at) / window_s)
        return self.level + (self.value - self.level) * w

    def step(self, level: float, now: float, window_s: float) -> Smoothed:
        """The signal changes to ``level`` at ``now``."""
        if level == self.level:
            return self
        return Smoothed(level, self.average(now, window_s), now)

    def rises_to(self, bound: float, window_s: float) -> float:
        """From when on the average is at or above ``bound`` while the level holds (inf: never)."""
        if self.level < bound:
            return math.inf
        if window_s <= 0 or self.value >= bound:
            return self.at
        if self.level == bound:
            return math.inf
        return self.at + window_s * math.log((self.level - self.value) / (self.level - bound))

    def falls_to(self, bound: float, window_s: float) -> float:
        """From when on the average is at or below ``bound`` while the level holds (inf: never)."""
        if self.level > bound:
            return math.inf
        if window_s <= 0 or self.value <= bound:
            return self.at
        if self.level == bound:
            return math.inf
        return self.at + window_s * math.log((self.value - self.level) / (bound - self.level))


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What the policy needs to know of one live instance."""

    id: str
    running: int
    idle_since: float
    starting: bool = False


@dataclass(frozen=True, slots=True)
class SpecView:
    """One spec's pool: its limits, proficiencies and live instances.

    ``busy`` is the attempts its instances run, with their time-average; None (not known) leaves
    the target-utilisation rule out.
    """

    name: str
    capabilities: Mapping[str, float]
    slots: int
    min_instances: int
    max_instances: int
    instances: Sequence[InstanceView] = ()
    last_action_at: float = -math.inf  # its last scale action, either way
    last_shrink_at: float = -math.inf
    hold_until: float = -math.inf  # no spawn before this (the back-off after a lost instance)
    busy: Smoothed | None = None


@dataclass(frozen=True, slots=True)
class ScaleAction:
    """Grow (``delta`` > 0) or shrink a spec's pool; ``terminate`` names instances to stop."""

    spec: str
    delta: int
    reason: str
    terminate: tuple[str, ...] = field(default=())


def sustained_at(
    cap: str, depth: Mapping[str, int], policy: PoolPolicy, sustained: Mapping[str, Smoothed] | None
) -> float:
    """From when on the queue of ``cap`` counts as deep: its depth and, given ``sustained``, its
    time-average over ``scale_up_window_s`` above the threshold (inf: not while it holds)."""
    threshold = policy.spawn_threshold
    if depth.get(cap, 0) <= threshold:
        return math.inf
    avg = None if sustained is None else sustained.get(cap)
    if avg is None or policy.scale_up_window_s <= 0:
        return -math.inf
    return avg.rises_to(threshold, policy.scale_up_window_s)


def surplus(s: SpecView, depth: Mapping[str, int], policy: PoolPolicy, now: float) -> int:
    """How many instances of ``s`` the target-utilisation rule finds spare at ``now``.

    While the spec runs work and none of its capabilities has a queue, an instance is spare
    when its attempts (now and time-averaged over ``utilisation_window_s``) would keep one
    instance fewer at least ``target_utilisation`` busy. Never below ``min_instances``.
    """
    busy, target = s.busy, policy.target_utilisation
    if busy is None or target <= 0 or busy.level <= 0:
        return 0
    if any(depth.get(cap, 0) > 0 for cap in s.capabilities):
        return 0
    n = len(s.instances)
    k = 0
    window = policy.utilisation_window_s
    while k < n - s.min_instances and now >= busy.falls_to(target * s.slots * (n - k - 1), window):
        k += 1
    return k


def plan(
    specs: Sequence[SpecView],
    depth: Mapping[str, int],
    policy: PoolPolicy,
    now: float,
    *,
    instances: int | None = None,
    free: Mapping[str, int] | None = None,
    room: Mapping[str, int] | None = None,
    room_total: int | None = None,
    served: Collection[str] | None = None,
    sustained: Mapping[str, Smoothed] | None = None,
) -> list[ScaleAction]:
    """Scale actions for this moment. ``depth`` is ready tasks per capability.

    ``instances`` is the number of live instances counted against ``max_agents`` (every spec,
    fixed or elastic, draining ones included; default: those in ``specs``). ``free`` gives the
    free slots per capability on ready instances: the queue fills them first. ``room`` (per
    capability) and ``room_total`` (over all) say how many more attempts the concurrency limits
    would let run: slots beyond that would only sit idle, so they are not spawned.
    ``served`` names the capabilities some instance offers, of any spec and in any state
    (default: those with an instance in ``specs``): a queue of one that is not served at all
    grows the pool from zero, threshold or not. ``sustained`` holds each capability's depth
    with its time-average: a queue grows the pool only once the average is above the threshold
    too (default: the depth now is enough).
    """
    actions: list[ScaleAction] = []
    total = sum(len(s.instances) for s in specs) if instances is None else instances
    agents_left = policy.max_agents - total
    spawns_left = policy.max_spawn_per_tick
    attempts_left = math.inf if room_total is None else room_total
    grown: dict[str, int] = {}
    threshold = policy.spawn_threshold
    # Scale up: deepest queues first, each with the spec that serves it best.
    for cap, n in sorted(depth.items(), key=lambda kv: (-kv[1], kv[0])):
        if n <= 0:
            continue
        serving = [s for s in specs if cap in s.capabilities]
        unserved = (
            cap not in served if served is not None else not any(s.instances for s in serving)
        )
        if not unserved and now < sustained_at(cap, depth, policy, sustained):
            continue
        # Slots that will take from this queue before any new one could: free ones, ones
        # still starting, ones decided this round for another capability.
        coming = sum(s.slots for s in serving for i in s.instances if i.starting)
        coming += sum(grown.get(s.name, 0) * s.slots for s in serving)
        coming += (free or {}).get(cap, 0)
        allowed = min(attempts_left, (room or {}).get(cap, math.inf))
        attempts_left -= min(n, coming)
        want = min(n - coming - threshold, allowed - coming)
        if unserved and coming == 0 and allowed > 0:
            want = max(want, 1)
        if want <= 0 or agents_left <= 0 or spawns_left <= 0:
            continue
        candidates = [
            s
            for s in serving
            if len(s.instances) + grown.get(s.name, 0) < s.max_instances
            and now - s.last_shrink_at >= policy.cooldown_s
            and now >= s.hold_until
        ]
        if not candidates:
            continue
        best = max(candidates, key=lambda s: (s.capabilities[cap], -len(s.instances), s.name))
        k = min(
            math.ceil(want / best.slots),
            best.max_instances - len(best.instances) - grown.get(best.name, 0),
            agents_left,
            spawns_left,
        )
        grown[best.name] = grown.get(best.name, 0) + k
        agents_left -= k
        spawns_left -= k
        attempts_left -= k * best.slots
        held = (
            f" (averaged over {policy.scale_up_window_s:g}s)"
            if sustained is not None and policy.scale_up_window_s > 0
            else ""
        )
        why = (
            f"{n} tasks of {cap!r} wait and no instance offers it"
            if n <= threshold
            else f"queue depth of {cap!r} is {n} > spawn threshold {threshold}{held}"
            + (f" ({coming} slots free or starting)" if coming else "")
        )
        actions.append(
            ScaleAction(
                best.name,
                k,
                f"{why}; {best.name} serves it best (proficiency {best.capabilities[cap]:.2f})",
            )
        )
    # Scale down: idle too long with nothing queued it could take, or spare by the target
    # utilisation; above its minimum, idle ones only, the longest idle first.
    for s in specs:
        if s.name in grown or now - s.last_action_at < policy.cooldown_s:
            continue
        spare = len(s.instances) - s.min_instances
        if spare <= 0:
            continue
        idle = sorted(
            (i for i in s.instances if i.running == 0 and not i.starting),
            key=lambda i: (i.idle_since, i.id),
        )
        queued = any(depth.get(cap, 0) > 0 for cap in s.capabilities)
        timed_out = (
            0 if queued else sum(1 for i in idle if now - i.idle_since >= policy.idle_timeout_s)
        )
        by_target = min(surplus(s, depth, policy, now), len(idle))
        count = min(spare, max(timed_out, by_target))
        if count <= 0:
            continue
        if by_target > timed_out:
            assert s.busy is not None
            load = s.busy.average(now, policy.utilisation_window_s)
            reason = (
                f"{load:.1f} busy slots (averaged over {policy.utilisation_window_s:g}s) "
                f"keep {len(s.instances) - count} instances at least "
                f"{policy.target_utilisation:.0%} busy (target utilisation; "
                f"keeping min_instances={s.min_instances})"
            )
        else:
            reason = (
                f"idle for at least {policy.idle_timeout_s:g}s with no queued work "
                f"(keeping min_instances={s.min_instances})"
            )
        victims = tuple(i.id for i in idle[:count])
        actions.append(ScaleAction(s.name, -len(victims), reason, victims))
    return actions


def next_change(
    specs: Sequence[SpecView],
    depth: Mapping[str, int],
    policy: PoolPolicy,
    served: Collection[str] | None = None,
    sustained: Mapping[str, Smoothed] | None = None,
) -> float | None:
    """The earliest time at which ``plan`` may act on the same ``depth`` because time passed:
    a deep queue's average rises above the threshold, the cooldown after a shrink or the
    back-off after a loss ends while a queue is deep (or not served at all), an idle instance
    reaches the idle timeout, or the busy slots' average falls enough to make an idle instance
    spare. None when only a new event (a task, a result, an instance) can change the plan: the
    caller ticks after each event anyway. ``served`` and ``sustained`` are as for ``plan``.
    """
    wake = math.inf
    window = policy.utilisation_window_s
    for s in specs:
        deep = [
            -math.inf
            if depth.get(cap, 0) > 0 and served is not None and cap not in served
            else sustained_at(cap, depth, policy, sustained)
            for cap in s.capabilities
        ]
        if any(t < math.inf for t in deep):
            # Growth waits on time for the queue's average, a shrink's cooldown or a loss's
            # back-off; else on events.
            due = max(min(deep), s.last_shrink_at + policy.cooldown_s, s.hold_until)
            if len(s.instances) < s.max_instances and due > -math.inf:
                wake = min(wake, due)
            continue
        n = len(s.instances)
        if n <= s.min_instances or any(depth.get(cap, 0) > 0 for cap in s.capabilities):
            continue
        idle = [i.idle_since for i in s.instances if i.running == 0 and not i.starting]
        if not idle:
            continue
        at = min(idle) + policy.idle_timeout_s
        busy = s.busy
        if busy is not None and policy.target_utilisation > 0 and busy.level > 0:
            bound = policy.target_utilisation * s.slots * (n - 1)
            at = min(at, busy.falls_to(bound, window))
        wake = min(wake, max(at, s.last_action_at + policy.cooldown_s))
    return None if wake == math.inf else wake
