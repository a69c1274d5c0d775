"""Scores reused within a dispatch round (``core.routing.round``) decide exactly what a fresh
scoring decides: the same workloads, driven on virtual time with seeded outcomes, give the same
decisions (agent, instance, score, parts, runners-up, reason) with reuse on and off."""

from __future__ import annotations

import heapq
import random
from typing import TYPE_CHECKING

import pytest

from metaagent import AgentTask, Outcome, RouteTask, RoutingWeights, Scheduler, SchedulerConfig
from metaagent.testing import NO_JITTER_RETRY, agent_spec

if TYPE_CHECKING:
    from collections.abc import Callable

    from metaagent.core.decisions import Output
    from metaagent.core.specs import AgentSpec


def drive(
    specs: list[AgentSpec],
    tasks: list[AgentTask],
    *,
    reuse: bool,
    seed: int = 7,
    failure: float = 0.0,
    **config: object,
) -> tuple[list[Output], int]:
    """Every output of a run on virtual time, and how many decisions reused scores.

    Attempt durations (whole seconds, so that many attempts end together and the next round
    has many tasks to route) and outcomes are drawn from ``seed`` in the order attempts start,
    so both ways see the same ones as long as they decide the same.
    """
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY, **config))  # type: ignore[arg-type]
    for spec in specs:
        s.add_agent(spec, 0.0)
    s.router.round.enabled = reuse
    rng = random.Random(seed)
    out: list[Output] = list(s.submit("r", tasks, 0.0))
    ends: list[tuple[float, int, RouteTask, bool]] = []
    now = 0.0
    seq = 0

    def started(outs: list[Output]) -> None:
        nonlocal seq
        for o in outs:
            if isinstance(o, RouteTask):
                seq += 1
                took = float(rng.randint(1, 3))  # whole seconds: many end together
                heapq.heappush(ends, (now + took, seq, o, rng.random() >= failure))
        out.extend(outs)

    started(s.tick(now))
    for _ in range(100_000):
        wake = s.next_wakeup()
        if not ends and wake is None:
            break
        due = [t for t in (ends[0][0] if ends else None, wake) if t is not None]
        now = min(due)
        while ends and ends[0][0] <= now:
            _, _, d, ok = heapq.heappop(ends)
            outcome = Outcome.SUCCEEDED if ok else Outcome.ERROR
            error = None if ok else "it failed"
            started(s.finish("r", d.task_id or "", d.attempt, outcome, now, error=error))
        started(s.tick(now))
    return out, s.router.round.reused


def both(make: Callable[[], tuple[list[AgentSpec], list[AgentTask]]], **kw: object) -> int:
    """Drive the workload both ways; the outputs must be equal. Returns the reuses."""
    specs, tasks = make()
    fresh, none = drive(specs, tasks, reuse=False, **kw)  # type: ignore[arg-type]
    specs, tasks = make()
    kept, reused = drive(specs, tasks, reuse=True, **kw)  # type: ignore[arg-type]
    assert none == 0
    routes = [o for o in fresh if isinstance(o, RouteTask)]
    assert routes, "the workload routed nothing"
    assert len(kept) == len(fresh)
    for a, b in zip(fresh, kept, strict=True):
        assert a == b
    return reused


def identical_agents() -> tuple[list[AgentSpec], list[AgentTask]]:
    specs = [agent_spec(f"noop-{i}", {"noop": 1.0}, concurrency=8) for i in range(4)]
    return specs, [AgentTask(f"t{i}", "noop") for i in range(400)]


def mixed_pool() -> tuple[list[AgentSpec], list[AgentTask]]:
    """Unequal agents, one serving two capabilities (scarcity), tasks of a few
    complexities, estimates, floors, groups, last attempts and dependencies."""
    specs = [
        agent_spec("fast", {"code": 0.9}, concurrency=3),
        agent_spec("mid", {"code": 0.6}, concurrency=4),
        agent_spec("cheap", {"code": 0.4}, concurrency=6, cost_per_call_usd=0.01),
        agent_spec("writer", {"docs": 0.9}, concurrency=2, cost_per_call_usd=0.2),
        agent_spec("helper", {"docs": 0.5, "audit": 0.4}, concurrency=2),
        agent_spec("auditor", {"audit": 0.8}, concurrency=1),
    ]
    rng = random.Random(3)
    tasks: list[AgentTask] = []
    for i in range(300):
        cap = rng.choice(["code", "code", "code", "docs", "audit"])
        deps = (f"m{rng.randrange(i)}",) if i > 20 and rng.random() < 0.3 else ()
        tasks.append(
            AgentTask(
                f"m{i}",
                cap,
                depends_on=deps,
                complexity=rng.choice([0.2, 0.5, 0.5, 0.9]),
                estimate_s=rng.choice([None, None, 3.0]),
                min_proficiency=0.5 if cap == "code" and rng.random() < 0.2 else None,
                group=rng.choice([None, None, "g1", "g2"]),
                max_attempts=rng.choice([1, 3]),
            )
        )
    return specs, tasks


def test_identical_agents_decide_the_same_and_reuse_most_scores() -> None:
    reused = both(identical_agents)
    assert reused > 300  # nearly every decision after a round's first reuses its scores


@pytest.mark.parametrize("failure", [0.0, 0.25])
def test_a_mixed_pool_decides_the_same(failure: float) -> None:
    assert both(mixed_pool, failure=failure) > 0


def test_cheapest_meeting_decides_the_same() -> None:
    weights = RoutingWeights(objective="cheapest_meeting", quality_target=0.55, cost=10.0)
    assert both(mixed_pool, failure=0.2, weights=weights) > 0


def test_thompson_sampling_reuses_nothing() -> None:
    assert both(identical_agents, routing="thompson") == 0


def scarce_server() -> tuple[list[AgentSpec], list[AgentTask]]:
    """A strong agent that also serves audits, which only it does: every code task it takes
    costs scarcity, which moves as the round starts audits (its pressure falls)."""
    specs = [
        agent_spec("both", {"code": 0.9, "audit": 0.9}, concurrency=12),
        agent_spec("coder", {"code": 0.6}, concurrency=12),
    ]
    tasks = [AgentTask(f"s{i}", "code" if i % 2 else "audit") for i in range(120)]
    return specs, tasks


def test_scores_with_scarcity_are_not_kept() -> None:
    # Reused, the code tasks' scarcity would stay as it was before the round's audits started.
    both(scarce_server)
