"""Pool search: the smallest pool that meets a deadline, by bisection over simulations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metaagent.sim.driver import simulate
from metaagent.sim.spec import scale_pools

if TYPE_CHECKING:
    from metaagent.core.routing.router import Chooser
    from metaagent.sim.driver import PoolShape
    from metaagent.sim.result import SimResult
    from metaagent.sim.spec import AgentPool, SimSpec


@dataclass(slots=True)
class PoolSearch:
    """The smallest pool found that meets a deadline (``met``), and every size tried.

    ``instances``/``pools``/``result`` describe the smallest passing pool, or, when no pool
    meets the deadline, the smallest of those with the shortest makespan.
    """

    deadline_s: float
    met: bool
    instances: int
    pools: tuple[AgentPool, ...]
    result: SimResult
    tried: list[tuple[int, float]]

    def to_json(self) -> dict[str, object]:
        return {
            "deadline_s": self.deadline_s,
            "met": self.met,
            "instances": self.instances,
            "pools": {p.spec.name: p.count for p in self.pools},
            "tried": [{"instances": n, "makespan_s": round(m, 6)} for n, m in self.tried],
            "result": self.result.to_json(),
        }


def find_smallest_pool(
    spec: SimSpec,
    deadline_s: float,
    *,
    chooser: Chooser | None = None,
    max_instances: int = 100_000,
    shape: PoolShape = "demand",
) -> PoolSearch:
    """The fewest instances whose makespan is within ``deadline_s``: double the pool until it
    passes, then bisect.

    Every size keeps one instance of each agent; ``shape`` spreads the rest: ``demand`` in
    proportion to the slot-seconds each kind of agent worked (per slot of one instance) in a
    first simulation of the file's own pool, so the bottleneck grows first; ``proportional``
    as the file's counts.

    The search stops, unmet, when doubling no longer shortens the makespan (the critical path
    or the failure rate bounds it) or the pool would pass ``max_instances``. Makespan is
    assumed to shrink as the pool grows; with random durations that is true on the whole, not
    at every size.
    """
    if not (deadline_s > 0 and math.isfinite(deadline_s)):
        raise ValueError(f"deadline must be a positive number of seconds, got {deadline_s}")
    base = spec.pools
    tried: list[tuple[int, float]] = []
    seen: dict[int, SimResult] = {}
    weights: dict[str, float] | None = None

    def attempt(n: int) -> SimResult:
        result = simulate(spec.with_pools(scale_pools(base, n, weights)), chooser=chooser)
        tried.append((n, result.makespan_s))
        seen[n] = result
        return result

    def unmet() -> PoolSearch:
        n = min(seen, key=lambda k: (seen[k].makespan_s, k))  # the best, and the smallest such
        return PoolSearch(deadline_s, False, n, scale_pools(base, n, weights), seen[n], tried)

    n = max(spec.instances, len(base))
    result = attempt(n)
    if shape == "demand":
        weights = {
            p.spec.name: result.by_agent[p.spec.name].busy_s / p.spec.concurrency
            for p in base
            if p.spec.name in result.by_agent
        }
        seen.clear()
        tried.clear()
        result = attempt(n)
    if result.makespan_s <= deadline_s:
        lo, hi, best = len(base) - 1, n, result
    else:
        lo, prev = n, result
        while True:
            nxt = min(lo * 2, max_instances)
            if nxt <= lo:
                return unmet()
            result = attempt(nxt)
            if result.makespan_s <= deadline_s:
                hi, best = nxt, result
                break
            if result.makespan_s >= prev.makespan_s * 0.999:
                return unmet()
            lo, prev = nxt, result
    while hi - lo > 1:
        mid = (lo + hi) // 2
        result = attempt(mid)
        if result.makespan_s <= deadline_s:
            hi, best = mid, result
        else:
            lo = mid
    return PoolSearch(deadline_s, True, hi, scale_pools(base, hi, weights), best, tried)
