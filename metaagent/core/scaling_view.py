"""What the scaling policy reads and returns: one frozen snapshot of the pool, the actions. Pure.

The pool builds a ``ScaleView`` for a moment; ``scaling.plan`` turns it into ``ScaleAction``s and
``scaling.next_change`` says when, the view unchanged, time alone would change that answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence


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
class ScaleView:
    """The pool at one moment, as the policy sees it. Every field past ``depth`` has a neutral
    default, so a view names only what its caller knows.

    ``specs`` are the elastic specs (the policy's to grow and shrink); ``depth`` is ready tasks
    per capability. ``other_instances`` counts the live instances not in ``specs`` (of fixed
    specs, draining ones): ``max_agents`` counts them too. ``free`` gives the free slots per
    capability on ready instances: the queue fills them first. ``room`` (per capability; absent:
    no limit) and ``room_total`` (over all) say how many more attempts the concurrency limits
    would let run: slots beyond that would only sit idle, so they are not spawned. ``served``
    names the capabilities some instance in service offers (of any spec; starting, quarantined
    or throttled, not draining): a queue nobody serves grows the pool from zero, threshold or
    not (None: those of the instances in
    ``specs`` for ``plan``, while ``next_change`` then counts every queue as served).
    ``sustained`` holds each capability's depth with its time-average: a queue grows the
    pool only once the average is above the threshold too (a capability absent: the depth now
    is enough).
    """

    specs: Sequence[SpecView]
    depth: Mapping[str, int] = field(default_factory=dict)
    other_instances: int = 0
    free: Mapping[str, int] = field(default_factory=dict)
    room: Mapping[str, int] = field(default_factory=dict)
    room_total: float = math.inf
    served: Collection[str] | None = None
    sustained: Mapping[str, Smoothed] = field(default_factory=dict)

    @property
    def instances(self) -> int:
        """Live instances counted against ``max_agents``: every spec's, draining ones too."""
        return sum(len(s.instances) for s in self.specs) + self.other_instances

    def is_served(self, cap: str) -> bool:
        """Whether some instance offers ``cap`` (see ``served``)."""
        if self.served is not None:
            return cap in self.served
        return any(s.instances for s in self.specs if cap in s.capabilities)

    def queued(self, s: SpecView) -> bool:
        """Whether a capability of ``s`` has ready tasks (of any spec's queue)."""
        return any(self.depth.get(cap, 0) > 0 for cap in s.capabilities)


@dataclass(frozen=True, slots=True)
class ScaleAction:
    """Grow (``delta`` > 0) or shrink a spec's pool; ``terminate`` names instances to stop."""

    spec: str
    delta: int
    reason: str
    terminate: tuple[str, ...] = field(default=())
