"""The pool's side of the scaling policy: what it observes between rounds and the snapshot it
hands to ``scaling.plan``. Pure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from metaagent.core.instances import AgentState
from metaagent.core.scaling import InstanceView, ScaleView, Smoothed, SpecView

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.core.routing.router import Router
    from metaagent.core.scaling import PoolPolicy
    from metaagent.core.spec_pool import SpecPool

_ZERO = Smoothed()
_GONE = (AgentState.DRAINING, AgentState.LOST, AgentState.STOPPED)


class ScaleTracker:
    """The time-averages the policy reads and the queues the last round saw.

    It reads the pool's ``specs`` (shared, not copied) and the router's free slots.
    """

    def __init__(self, router: Router, policy: PoolPolicy, specs: Mapping[str, SpecPool]) -> None:
        self.router = router
        self.policy = policy
        self.specs = specs
        self._ticked = -math.inf  # ``now`` of the last round
        self._ticked_depth: dict[str, int] = {}  # the queue depths it saw
        self._depth_avg: dict[str, Smoothed] = {}  # queue depths with their time-averages

    def observe(self, now: float, depth: Mapping[str, int]) -> None:
        """Step the time-averages the policy reads (queue depths, busy slots) to ``now``."""
        # Both as they will be once this round's queue is dispatched (the tick comes before the
        # dispatch): the queue less what free slots take, busy slots plus what their free slots
        # take (all of their capabilities' queue at most: conservative when another spec
        # takes some).
        window = self.policy.scale_up_window_s
        avg = self._depth_avg
        for cap in {*avg, *depth}:
            n = depth.get(cap, 0)
            if n:
                n = max(0, n - self.router.free(cap))
            avg[cap] = avg.get(cap, _ZERO).step(n, now, window)
        window = self.policy.utilisation_window_s
        for sp in self.specs.values():
            if sp.elastic:
                running = free = 0
                for i in sp.in_service():
                    running += i.running
                    free += i.free
                queued = sum(depth.get(cap, 0) for cap in sp.spec.capabilities)
                sp.busy = sp.busy.step(running + min(queued, free), now, window)

    def seen(self, now: float, depth: Mapping[str, int]) -> None:
        """Remember the round at ``now`` and the queues it saw."""
        self._ticked = now
        self._ticked_depth = {cap: n for cap, n in depth.items() if n}

    def views(self) -> list[SpecView]:
        """The elastic specs as the scaling policy sees them (draining instances are gone)."""
        return [
            SpecView(
                name=sp.spec.name,
                capabilities=sp.spec.capabilities,
                slots=sp.spec.concurrency,
                min_instances=sp.min_instances,
                max_instances=sp.max_instances,
                instances=[
                    InstanceView(i.id, i.running, i.idle_since, i.state is AgentState.STARTING)
                    for i in sp.in_service()
                ],
                last_action_at=sp.last_action_at,
                last_shrink_at=sp.last_shrink_at,
                hold_until=sp.hold_until,
                busy=sp.busy,
            )
            for sp in self.specs.values()
            if sp.elastic
        ]

    def round_view(
        self,
        depth: Mapping[str, int],
        *,
        instances: int,
        room: Mapping[str, int],
        room_total: float,
    ) -> ScaleView:
        """The snapshot of one scaling round; ``instances`` counts every instance of the pool.

        ``room`` and ``room_total`` are the attempts the concurrency limits still let start.
        """
        specs = self.views()
        return ScaleView(
            specs,
            depth,
            other_instances=instances - sum(len(s.instances) for s in specs),
            # Free slots matter only to a queue deep enough to grow on.
            free={
                cap: self.router.free(cap)
                for cap, n in depth.items()
                if n > self.policy.spawn_threshold
            },
            room=room,
            room_total=room_total,
            served=self._served(depth),
            sustained=self._depth_avg,
        )

    def wake_view(self, depth: Mapping[str, int]) -> ScaleView:
        """The snapshot ``scaling.next_change`` reads to say when time alone changes a plan."""
        return ScaleView(self.views(), depth, served=self._served(depth), sustained=self._depth_avg)

    def decided(self, t: float, depth: Mapping[str, int]) -> bool:
        """True when the last round already passed ``t`` and the queues are as it saw them.

        The policy decided not to act then, and would not now.
        """
        return t <= self._ticked and self._same_depth(depth)

    def _served(self, depth: Mapping[str, int]) -> set[str]:
        """Queued capabilities that some instance offers that is or will be in service (of any
        spec; starting, quarantined and throttled ones count): one that only draining
        instances offer grows from zero at once, it does not wait for them to stop."""
        router = self.router
        return {
            cap
            for cap, n in depth.items()
            if n and any(i.state not in _GONE for i in router.members(cap))
        }

    def _same_depth(self, depth: Mapping[str, int]) -> bool:
        seen = self._ticked_depth
        return sum(1 for n in depth.values() if n) == len(seen) and all(
            depth.get(cap, 0) == n for cap, n in seen.items()
        )
