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
        return out


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What the policy needs to know of one live instance."""

    id: str
    running: int
    idle_since: float
    starting: bool = False


@dataclass(frozen=True, slots=True)
class SpecView:
    """One spec's pool: its limits, proficiencies and live instances."""

    name: str
    capabilities: Mapping[str, float]
    slots: int
    min_instances: int
    max_instances: int
    instances: Sequence[InstanceView] = ()
    last_action_at: float = -math.inf  # its last scale action, either way
    last_shrink_at: float = -math.inf
    hold_until: float = -math.inf  # no spawn before this (the back-off after a lost instance)


@dataclass(frozen=True, slots=True)
class ScaleAction:
    """Grow (``delta`` > 0) or shrink a spec's pool; ``terminate`` names instances to stop."""

    spec: str
    delta: int
    reason: str
    terminate: tuple[str, ...] = field(default=())


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
) -> list[ScaleAction]:
    """Scale actions for this moment. ``depth`` is ready tasks per capability.

    ``instances`` is the number of live instances counted against ``max_agents`` (every spec,
    fixed or elastic, draining ones included; default: those in ``specs``). ``free`` gives the
    free slots per capability on ready instances: the queue fills them first. ``room`` (per
    capability) and ``room_total`` (over all) say how many more attempts the concurrency limits
    would let run: slots beyond that would only sit idle, so they are not spawned.
    ``served`` names the capabilities some instance offers, of any spec and in any state
    (default: those with an instance in ``specs``): a queue of one that is not served at all
    grows the pool from zero, threshold or not.
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
        if n <= threshold and not unserved:
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
        why = (
            f"{n} tasks of {cap!r} wait and no instance offers it"
            if n <= threshold
            else f"queue depth of {cap!r} is {n} > spawn threshold {threshold}"
            + (f" ({coming} slots free or starting)" if coming else "")
        )
        actions.append(
            ScaleAction(
                best.name,
                k,
                f"{why}; {best.name} serves it best (proficiency {best.capabilities[cap]:.2f})",
            )
        )
    # Scale down: idle too long, nothing queued that it could take, above its minimum.
    for s in specs:
        if s.name in grown or now - s.last_action_at < policy.cooldown_s:
            continue
        if any(depth.get(cap, 0) > 0 for cap in s.capabilities):
            continue
        spare = len(s.instances) - s.min_instances
        idle = sorted(
            (i for i in s.instances
             if i.running == 0 and not i.starting and now - i.idle_since >= policy.idle_timeout_s),
            key=lambda i: (i.idle_since, i.id),
        )  # fmt: skip
        victims = tuple(i.id for i in idle[: max(0, spare)])
        if victims:
            actions.append(
                ScaleAction(
                    s.name,
                    -len(victims),
                    f"idle for at least {policy.idle_timeout_s:g}s with no queued work "
                    f"(keeping min_instances={s.min_instances})",
                    victims,
                )
            )
    return actions


def next_change(
    specs: Sequence[SpecView],
    depth: Mapping[str, int],
    policy: PoolPolicy,
    served: Collection[str] | None = None,
) -> float | None:
    """The earliest time at which ``plan`` may act on the same ``depth`` because time passed:
    the cooldown after a shrink or the back-off after a loss ends while a queue is deep (or not
    served at all), or an idle instance reaches the idle timeout. None when only a new event (a
    task, a result, an instance) can change the plan: the caller ticks after each event anyway.
    ``served`` is as for ``plan``.
    """
    wake = math.inf
    for s in specs:
        if any(
            depth.get(cap, 0) > policy.spawn_threshold
            or (depth.get(cap, 0) > 0 and served is not None and cap not in served)
            for cap in s.capabilities
        ):
            # Growth waits on time only for a shrink's cooldown or a loss's back-off; else on
            # events.
            held = max(s.last_shrink_at + policy.cooldown_s, s.hold_until)
            if len(s.instances) < s.max_instances and held > -math.inf:
                wake = min(wake, held)
            continue
        if len(s.instances) <= s.min_instances or any(
            depth.get(cap, 0) > 0 for cap in s.capabilities
        ):
            continue
        idle = [i.idle_since for i in s.instances if i.running == 0 and not i.starting]
        if idle:
            cooled = s.last_action_at + policy.cooldown_s
            wake = min(wake, max(min(idle) + policy.idle_timeout_s, cooled))
    return None if wake == math.inf else wake
