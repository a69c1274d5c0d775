"""``bench hetero`` with failures: an attempt fails at a rate its agent's proficiency sets.

An attempt of a capability an agent serves at proficiency ``p`` takes ``base / p`` and fails
with probability ``FAILURE_SCALE * (1 - p)`` (a failed attempt takes its whole duration; the
task is tried again, on any agent, until it succeeds). Outcomes are random, so both yardsticks
are about *expected* makespans, compared over many DAGs:

- **bound** (on the expected makespan of any policy that does not know the outcomes
  beforehand): max(critical path at fastest durations, the fractional assignment LP of
  ``bench._bounds`` with each speed ``r_ac`` replaced by ``r_ac * q_ac``, ``q_ac = 1 - f_ac``).
  Why: whether an attempt succeeds is independent of everything decided before it starts (the
  agent included), so the expected base work of the attempts made on ``a`` for ``c`` is
  ``1 / q_ac`` times the expected base work that succeeded there (Wald's identity), and each
  task succeeds once: ``E[busy_a] = sum_c E[x_ac] / (r_ac q_ac)`` with ``sum_a x_ac = W_c``,
  while ``busy_a <= s_a T``. The dual-vertex argument then holds for the expectations. (The
  head/tail windows are left out: failed attempts may run outside a window.) The critical
  path holds for every outcome.
- **reference**: list scheduling with perfect knowledge of durations (not of outcomes), each
  attempt on the slot where it is expected to succeed first (``start + duration / q``), a
  failed task ready again when its attempt ends; one of the HEFT order and random
  perturbations of it, every order meeting the same luck (attempt ``k`` of a task draws one uniform
  number, and fails on an agent when it is below that agent's failure rate). The simulated
  routers meet that same luck too (``SimSpec.outcome_luck``): who fails where still depends on
  the choices, as it should. The order is *chosen* without seeing that luck
  (``chosen_failing``): by its mean makespan over draws of its own, then run on the shared
  luck. Taking the order that is best on the shared luck itself (kept and reported as the
  clairvoyant reference) picks, among 21 orders, the one that happens to send the attempts
  that would fail to agents where they succeed: knowledge of the outcomes, which no router
  has and the bound above does not allow either.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from bench._bounds import dual_vertices, load
from bench._listsched import edges, upward_rank

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping, Sequence

    from metaagent.core.specs import AgentSpec
    from metaagent.core.tasks import AgentTask

FAILURE_SCALE = 0.5
MAX_ATTEMPTS = 30  # high enough that every task succeeds (a task that fails ends nothing)


def failure_rate(proficiency: float) -> float:
    return FAILURE_SCALE * (1.0 - proficiency)


def expected_vertices(pool: Sequence[AgentSpec]) -> list[dict[str, float]]:
    """The dual vertices of the assignment LP at the expected speeds ``r * (1 - f)``."""
    speeds = {
        s.name: (s.concurrency, {c: p * (1.0 - failure_rate(p)) for c, p in s.capabilities.items()})
        for s in pool
    }
    return dual_vertices(speeds)


def expected_bound(
    tasks: Sequence[AgentTask],
    base: Callable[[AgentTask], float],
    fastest: Callable[[AgentTask], float],
    vertices: Sequence[Mapping[str, float]],
) -> float:
    """A lower bound on the expected makespan (see the module docstring)."""
    cp = max(upward_rank(tasks, fastest).values())
    work: dict[str, float] = {}
    for t in tasks:
        work[t.capability] = work.get(t.capability, 0.0) + base(t)
    return max(cp, load(work, vertices))


def failing_schedule(
    tasks: Sequence[AgentTask],
    slots: Sequence[str],
    duration: Callable[[AgentTask, str], float | None],
    fails: Callable[[str, str], float],
    priority: Mapping[str, float],
    luck: Mapping[tuple[str, int], float],
) -> float:
    """Makespan of a list schedule with retries: ready attempts by ``priority`` (highest
    first), each on the slot where ``start + duration / (1 - fails(agent))`` is least; attempt
    ``k`` of task ``t`` fails on an agent when ``luck[(t, k)]`` is below its failure rate."""
    free = [0.0] * len(slots)
    left, below = edges(tasks)
    ready_at = dict.fromkeys(left, 0.0)
    order = {t.id: i for i, t in enumerate(tasks)}
    heap = [(-priority[t.id], order[t.id], 1, t) for t in tasks if not t.depends_on]
    heapq.heapify(heap)
    end = 0.0
    while heap:
        _, _, attempt, task = heapq.heappop(heap)
        est = ready_at[task.id]
        best_k, best_e, took = -1, float("inf"), 0.0
        for k, agent in enumerate(slots):
            run = duration(task, agent)
            if run is None:
                continue
            e = max(est, free[k]) + run / (1.0 - fails(agent, task.capability))
            if e < best_e:
                best_k, best_e, took = k, e, run
        if best_k < 0:
            raise ValueError(f"no slot can take {task.id!r}")
        finish = max(est, free[best_k]) + took
        free[best_k] = finish
        end = max(end, finish)
        if luck[(task.id, attempt)] < fails(slots[best_k], task.capability):
            if attempt >= MAX_ATTEMPTS:
                raise ValueError(f"{task.id!r} failed {attempt} times")
            ready_at[task.id] = finish
            heapq.heappush(heap, (-priority[task.id], order[task.id], attempt + 1, task))
            continue
        for child in below[task.id]:
            ready_at[child.id] = max(ready_at[child.id], finish)
            left[child.id] -= 1
            if left[child.id] == 0:
                heapq.heappush(heap, (-priority[child.id], order[child.id], 1, child))
    return end


def draw_luck(tasks: Sequence[AgentTask], rng: random.Random) -> dict[tuple[str, int], float]:
    """For every task and attempt, the uniform number its outcome is drawn from."""
    return {(t.id, k): rng.random() for t in tasks for k in range(1, MAX_ATTEMPTS + 1)}


def orders(
    tasks: Sequence[AgentTask],
    mean: Callable[[AgentTask], float],
    restarts: int,
    rng: random.Random,
) -> list[dict[str, float]]:
    """The priority orders the reference searches: HEFT's rank by ``mean`` and ``restarts``
    perturbations of it, drawn from ``rng``."""
    rank = upward_rank(tasks, mean)
    out = [rank]
    for _ in range(restarts):
        out.append({tid: r * rng.uniform(0.5, 1.5) for tid, r in rank.items()})
    return out


def choose_order(
    tasks: Sequence[AgentTask],
    slots: Sequence[str],
    duration: Callable[[AgentTask, str], float | None],
    fails: Callable[[str, str], float],
    candidates: Sequence[Mapping[str, float]],
    draws: int,
    draw_rng: random.Random,
) -> int:
    """The index of the order with the least mean makespan over ``draws`` draws of luck of
    its own (from ``draw_rng``): chosen without the luck it will then meet."""
    trials = [draw_luck(tasks, draw_rng) for _ in range(max(1, draws))]

    def total(order: Mapping[str, float]) -> float:
        return sum(failing_schedule(tasks, slots, duration, fails, order, t) for t in trials)

    return min(range(len(candidates)), key=lambda i: total(candidates[i]))


def chosen_failing(
    tasks: Sequence[AgentTask],
    slots: Sequence[str],
    duration: Callable[[AgentTask, str], float | None],
    fails: Callable[[str, str], float],
    mean: Callable[[AgentTask], float],
    restarts: int,
    rng: random.Random,
    luck: Mapping[tuple[str, int], float],
    draws: int,
    draw_rng: random.Random,
) -> tuple[float, float]:
    """The reference that does not know the outcomes, and the clairvoyant one: over the
    ``orders``, the makespan on ``luck`` of the one ``choose_order`` picks, and the least
    makespan on ``luck`` of any of them."""
    candidates = orders(tasks, mean, restarts, rng)
    pick = choose_order(tasks, slots, duration, fails, candidates, draws, draw_rng)
    on_luck = [failing_schedule(tasks, slots, duration, fails, o, luck) for o in candidates]
    return on_luck[pick], min(on_luck)
