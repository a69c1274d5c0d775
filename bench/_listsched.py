"""List scheduling with perfect knowledge of durations, the reference the benchmarks measure
the scheduler against: tasks in priority order (the highest-priority ready task first), each on
the slot where it finishes earliest (HEFT's assignment, without insertion)."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping, Sequence

    from metaagent.core.tasks import AgentTask


def upward_rank(tasks: Sequence[AgentTask], cost: Callable[[AgentTask], float]) -> dict[str, float]:
    """HEFT upward rank: a task's cost plus the longest ranked path below it."""
    by_id = {t.id: t for t in tasks}
    below: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for d in t.depends_on:
            below[d].append(t.id)
    rank: dict[str, float] = {}

    def visit(tid: str) -> float:
        r = rank.get(tid)
        if r is None:
            r = rank[tid] = cost(by_id[tid]) + max((visit(c) for c in below[tid]), default=0.0)
        return r

    for t in reversed(tasks):  # tasks are listed parents first: no deep recursion
        visit(t.id)
    return rank


def list_schedule(
    tasks: Sequence[AgentTask],
    slots: Sequence[str],
    duration: Callable[[AgentTask, str], float | None],
    priority: Mapping[str, float],
) -> float:
    """Makespan of a list schedule: ready tasks by ``priority`` (highest first), each on the
    slot (an agent name per slot) where it finishes earliest; ``duration(task, agent)`` is
    ``None`` where the agent cannot take the task."""
    free = [0.0] * len(slots)
    left, below = edges(tasks)
    ready_at = dict.fromkeys(left, 0.0)
    heap = [(-priority[t.id], i, t) for i, t in enumerate(tasks) if not t.depends_on]
    heapq.heapify(heap)
    order = {t.id: i for i, t in enumerate(tasks)}
    end = 0.0
    while heap:
        _, _, task = heapq.heappop(heap)
        est = ready_at[task.id]
        best_k, best_f = -1, float("inf")
        for k, agent in enumerate(slots):
            took = duration(task, agent)
            if took is None:
                continue
            f = max(est, free[k]) + took
            if f < best_f:
                best_k, best_f = k, f
        if best_k < 0:
            raise ValueError(f"no slot can take {task.id!r}")
        free[best_k] = best_f
        end = max(end, best_f)
        for child in below[task.id]:
            ready_at[child.id] = max(ready_at[child.id], best_f)
            left[child.id] -= 1
            if left[child.id] == 0:
                heapq.heappush(heap, (-priority[child.id], order[child.id], child))
    return end


def searched(
    tasks: Sequence[AgentTask],
    slots: Sequence[str],
    duration: Callable[[AgentTask, str], float | None],
    mean: Callable[[AgentTask], float],
    restarts: int,
    rng: random.Random,
) -> float:
    """The best list schedule found over priority orders: the HEFT rank (by ``mean``), then
    ``restarts`` random perturbations of it (each rank times a factor in 0.5..1.5)."""
    rank = upward_rank(tasks, mean)
    best = list_schedule(tasks, slots, duration, rank)
    for _ in range(restarts):
        noisy = {tid: r * rng.uniform(0.5, 1.5) for tid, r in rank.items()}
        best = min(best, list_schedule(tasks, slots, duration, noisy))
    return best


def edges(tasks: Sequence[AgentTask]) -> tuple[dict[str, int], dict[str, list[AgentTask]]]:
    """Each task's count of unmet dependencies, and the tasks that depend on each."""
    left = {t.id: len(t.depends_on) for t in tasks}
    below: dict[str, list[AgentTask]] = {t.id: [] for t in tasks}
    for t in tasks:
        for d in t.depends_on:
            below[d].append(t)
    return left, below
