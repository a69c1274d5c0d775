"""Generated workloads: a ``Workload`` describes many tasks (their mix, layers, groups and
arrivals); ``generate_tasks`` draws them from a seeded ``random.Random``, the same every time.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from metaagent.core.tasks import AgentTask

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = ["Arrival", "Workload", "generate_tasks"]


@dataclass(frozen=True, slots=True)
class Workload:
    """A generated workload: ``count`` tasks, seeded.

    ``capabilities`` weighs the mix (empty: every capability of the pool, equally).
    ``layers`` > 1 builds a layered random DAG: each task of a layer depends on 1 to
    ``max_parents`` tasks of the layer before. ``group_size`` puts consecutive tasks of one
    capability in groups of that size. ``arrival_rate_per_s`` makes tasks arrive over time
    (Poisson), each as its own run; it needs ``layers`` of 1.
    """

    count: int
    capabilities: Mapping[str, float] = field(default_factory=dict)
    layers: int = 1
    max_parents: int = 2
    complexity: tuple[float, float] = (0.5, 0.5)
    priorities: Mapping[int, float] = field(default_factory=dict)
    group_size: int | None = None
    arrival_rate_per_s: float | None = None
    max_attempts: int = 3
    timeout_s: float | None = None
    seed: int | None = None

    def problems(self) -> list[str]:
        """What is wrong with the workload, field by field (empty: nothing)."""
        return [p for check in _WORKLOAD_CHECKS for p in check(self)]


def _size_problems(w: Workload) -> list[str]:
    out = []
    if w.count < 1:
        out.append(f"count: must be at least 1, got {w.count}")
    if w.layers < 1 or w.layers > max(1, w.count):
        out.append(f"layers: must be within 1..count, got {w.layers}")
    if w.max_parents < 1:
        out.append(f"max_parents: must be at least 1, got {w.max_parents}")
    lo, hi = w.complexity
    if not (0.0 <= lo <= hi <= 1.0):
        out.append(f"complexity: must be [low, high] within 0..1, got [{lo}, {hi}]")
    return out


def _weight_problems(name: str, weights: Iterable[tuple[object, float]]) -> list[str]:
    return [
        f"{name}.{key}: weight must be zero or more, got {w}"
        for key, w in weights
        if not (w >= 0 and math.isfinite(w))
    ]


def _mix_problems(w: Workload) -> list[str]:
    out = _weight_problems("capabilities", w.capabilities.items())
    if w.capabilities and not any(x > 0 for x in w.capabilities.values()):
        out.append("capabilities: at least one weight must be positive")
    return out + _weight_problems("priorities", w.priorities.items())


def _arrival_problems(w: Workload) -> list[str]:
    out = []
    if w.group_size is not None and w.group_size < 1:
        out.append(f"group_size: must be at least 1, got {w.group_size}")
    rate = w.arrival_rate_per_s
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        out.append(f"arrival_rate_per_s: must be positive, got {rate}")
    if rate is not None and w.layers > 1:
        out.append("arrival_rate_per_s: tasks arriving one by one cannot form layers")
    if w.max_attempts < 1:
        out.append(f"max_attempts: must be at least 1, got {w.max_attempts}")
    return out


# each check covers a few fields: problems come out in the order of the fields
_WORKLOAD_CHECKS: tuple[Callable[[Workload], list[str]], ...] = (
    _size_problems,
    _mix_problems,
    _arrival_problems,
)


class Arrival(NamedTuple):
    """A run of tasks that arrives at ``at_s`` (virtual seconds)."""

    at_s: float
    tasks: list[AgentTask]


def generate_tasks(workload: Workload, capabilities: Sequence[str], seed: int) -> list[Arrival]:
    """The workload's tasks as runs, in order of arrival."""
    rng = random.Random(workload.seed if workload.seed is not None else seed)
    n = workload.count
    size = workload.group_size or 1
    # The draws come in a fixed order (capabilities, priorities, then task by task): a seed
    # gives the same tasks.
    picked = _pick_capabilities(rng, workload, capabilities, math.ceil(n / size))
    prio_of = _pick_priorities(rng, workload.priorities, n)
    tasks: list[AgentTask] = []
    for i, (tid, deps) in enumerate(_layered_ids(rng, workload)):
        # drawn after this task's parents, before the next task's: keep the order
        complexity = _complexity(rng, workload.complexity)
        group = f"g{i // size}" if workload.group_size is not None else None
        tasks.append(
            AgentTask(
                tid, picked[i // size], priority=prio_of[i], depends_on=deps,
                complexity=complexity, timeout_s=workload.timeout_s,
                max_attempts=workload.max_attempts, group=group,
            )
        )  # fmt: skip
    return _arrive(rng, tasks, workload.arrival_rate_per_s)


def _pick_capabilities(
    rng: random.Random, workload: Workload, capabilities: Sequence[str], k: int
) -> list[str]:
    mix = dict(workload.capabilities) or dict.fromkeys(capabilities, 1.0)
    caps = [c for c, w in mix.items() if w > 0]
    return rng.choices(caps, [mix[c] for c in caps], k=k)


def _pick_priorities(rng: random.Random, weights: Mapping[int, float], n: int) -> list[int]:
    prios = [p for p, w in weights.items() if w > 0] or [0]
    if len(prios) == 1:
        return [prios[0]] * n
    return rng.choices(prios, [weights[p] for p in prios], k=n)


def _layered_ids(rng: random.Random, workload: Workload) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Task ids and dependencies, layer by layer: each task depends on 1 to ``max_parents``
    tasks of the layer before. Lazy: the caller draws from ``rng`` between two tasks."""
    per_layer = math.ceil(workload.count / workload.layers)
    above: list[str] = []
    layer: list[str] = []
    for i in range(workload.count):
        if i and i % per_layer == 0:
            above, layer = layer, []
        deps: tuple[str, ...] = ()
        if above:
            k = min(len(above), rng.randint(1, workload.max_parents))
            deps = tuple(rng.sample(above, k))
        tid = f"t{i}"
        layer.append(tid)
        yield tid, deps


def _complexity(rng: random.Random, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    span = hi - lo
    return round(lo + span * rng.random(), 3) if span else lo


def _arrive(rng: random.Random, tasks: list[AgentTask], rate: float | None) -> list[Arrival]:
    """One run at time 0, or (Poisson arrivals at ``rate`` per second) one run per task."""
    if rate is None:
        return [Arrival(0.0, tasks)]
    out: list[Arrival] = []
    t = 0.0
    for task in tasks:
        out.append(Arrival(t, [task]))
        t += rng.expovariate(rate)
    return out
