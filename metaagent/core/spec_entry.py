"""``SpecEntry``: one agent spec as the router sees it, with its running attempts' expected ends."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from metaagent.core.tasks import TaskState

if TYPE_CHECKING:
    from metaagent.core.instances import AgentInstance
    from metaagent.core.specs import AgentSpec

_RUNNING = TaskState.RUNNING


class SpecEntry:
    """One spec in the router: its live instances, the free ones, its running attempts'
    expected ends (a heap, stale entries dropped lazily) and this round's claims."""

    __slots__ = (
        "claims", "ends", "free", "free_insts", "instances", "name", "slots", "spec",
    )  # fmt: skip

    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.instances: dict[AgentInstance, None] = {}
        self.free_insts: dict[AgentInstance, None] = {}
        self.free = 0
        self.slots = 0  # slots of its live instances
        # (expected end, seq, record, attempt, expected duration)
        self.ends: list[tuple[float, int, object, int, float]] = []
        self.claims: list[float] | None = None  # this round's slot times, once one is claimed

    def next_free(self, now: float) -> float | None:
        """When a slot of this spec is expected to free (now if one is free); ``None`` when it
        has neither a free slot nor a running attempt (quarantined, starting, throttled)."""
        if self.free > 0:
            return now
        if self.claims is not None:
            return self.claims[0] if self.claims else None
        ends = self.ends
        while ends:
            end, _, rec, attempt, run = ends[0]
            if rec.state is _RUNNING and rec.attempt == attempt:  # type: ignore[attr-defined]
                # An attempt past its expected end is given half its expected duration more.
                return end if end > now else now + 0.5 * run
            heapq.heappop(ends)
        return None

    def claim(self, now: float, duration_s: float) -> None:
        """A task waits for this spec: its next slot is taken for the rest of the round."""
        claims = self.claims
        if claims is None:
            claims = self.claims = sorted(
                e[0] if e[0] > now else now + 0.5 * e[4] for e in self.ends
                if e[2].state is _RUNNING and e[2].attempt == e[3]  # type: ignore[attr-defined]
            )  # fmt: skip
        if claims:
            heapq.heapreplace(claims, claims[0] + duration_s)
