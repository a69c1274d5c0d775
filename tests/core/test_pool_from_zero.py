"""A spec scaled to zero: it grows when work for it is queued, up to ``max_instances`` under
load, and back to ``min_instances`` when idle; ``min_instances`` is bounded by ``max_agents``.

The pure scheduler on virtual time, driven as the runtime drives it: an instance whose runner
has nothing to start is reported ready while the caller carries out the round that spawned it,
so only ``next_wakeup`` can bring the next round (the cause of a run that hung for ever).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentTask,
    ManualClock,
    Orchestrator,
    Outcome,
    RouteTask,
    Scheduler,
    SchedulerConfig,
    SpawnAgent,
    TaskState,
    TerminateAgent,
    WorkflowError,
)
from metaagent.core.scaling import PoolPolicy
from metaagent.testing import NO_JITTER_RETRY, agent_spec, decisions_of, echo_runner, run_virtual
from metaagent.testing import task as make_task

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.decisions import Output


def scheduler(lo: int = 0, hi: int = 3, **policy: float) -> Scheduler:
    """One spec ``w`` offering ``x``, between ``lo`` and ``hi`` instances."""
    config = SchedulerConfig(retry=NO_JITTER_RETRY, pool=PoolPolicy(**policy))  # type: ignore[arg-type]
    s = Scheduler(config)
    s.add_spec(agent_spec("w", {"x": 0.9}, min_instances=lo, max_instances=hi), 0.0)
    return s


def tasks(n: int, prefix: str = "t") -> list[AgentTask]:
    return [make_task(f"{prefix}{i}", capability="x") for i in range(n)]


class Play:
    """The runtime, played by hand: a spawned instance is ready at once (reported while its
    round's decisions are carried out), a terminated one stops at once, an attempt takes
    ``duration_s``. Keeps every output and the most instances live at once."""

    def __init__(self, s: Scheduler, duration_s: float = 1.0) -> None:
        self.s = s
        self.duration_s = duration_s
        self.outs: list[Output] = []
        self.live = 0
        self.peak = 0
        self._ends: list[tuple[float, int, RouteTask]] = []
        self._seq = 0

    def carry_out(self, outs: Sequence[Output], now: float) -> None:
        self.outs.extend(outs)
        for o in outs:
            if isinstance(o, SpawnAgent):
                self.s.agent_ready(o.instance, now)
                self.live += 1
                self.peak = max(self.peak, self.live)
            elif isinstance(o, TerminateAgent):
                self.s.agent_stopped(o.instance, now)
                self.live -= 1
            elif isinstance(o, RouteTask):
                self._seq += 1
                heapq.heappush(self._ends, (now + self.duration_s, self._seq, o))

    def until_idle(self, now: float, max_steps: int = 10_000) -> float:
        """Play until nothing is left to do; the time it ended."""
        for _ in range(max_steps):
            self.carry_out(self.s.tick(now), now)
            ends = self._ends
            due = [t for t in (self.s.next_wakeup(), ends[0][0] if ends else None) if t is not None]
            if not due:
                return now
            now = max(now, min(due))
            while ends and ends[0][0] <= now:
                _, _, r = heapq.heappop(ends)
                outs = self.s.finish(r.run_id or "", r.task_id or "", r.attempt,
                                     Outcome.SUCCEEDED, now)  # fmt: skip
                self.carry_out(outs, now)
        raise AssertionError(f"still busy after {max_steps} steps")


@pytest.mark.parametrize(
    ("threshold", "queued", "spawned"),
    [
        # With no live instance, one queued task is enough, whatever the threshold; past it,
        # growth from zero asks for enough slots to bring the queue to the threshold.
        (0, 1, 1),
        (0, 2, 2),
        (1, 1, 1),
        (1, 3, 2),
        (5, 1, 1),
        (5, 2, 1),
    ],
)
def test_a_spec_at_zero_grows_when_its_work_is_queued(
    threshold: int, queued: int, spawned: int
) -> None:
    s = scheduler(spawn_threshold=threshold)
    play = Play(s)
    s.submit("r", tasks(queued), 0.0)
    first = s.tick(0.0)
    assert len(decisions_of(first, SpawnAgent)) == spawned
    play.carry_out(first, 0.0)
    # Ready while its round was carried out: the next round is due now, and routes to it.
    assert s.next_wakeup() == 0.0
    play.until_idle(0.0)
    assert all(state is TaskState.SUCCEEDED for state in s.task_states("r").values())


def test_a_spec_at_zero_reaches_max_instances_under_load_and_no_more() -> None:
    s = scheduler(hi=3, spawn_threshold=0, scale_up_window_s=0.0)
    play = Play(s)
    s.submit("r", tasks(30), 0.0)
    end = play.until_idle(0.0)
    assert play.peak == 3
    assert all(state is TaskState.SUCCEEDED for state in s.task_states("r").values())
    assert end == pytest.approx(10.0 + 60.0, abs=1.0)  # 30 s of work on 3, then idle 60 s


def test_a_spec_shrinks_back_to_zero_after_the_idle_timeout_and_grows_again() -> None:
    s = scheduler(hi=3, spawn_threshold=0, scale_up_window_s=0.0, idle_timeout_s=60.0)
    play = Play(s)
    s.submit("r", tasks(6), 0.0)
    end = play.until_idle(0.0)
    assert play.peak == 3
    assert play.live == 0
    terms = decisions_of(play.outs, TerminateAgent)
    assert len(terms) == 3
    assert all(t.at == 62.0 for t in terms)  # the last tasks end at 2 s: idle 60 s from there
    assert all("keeping min_instances=0" in t.reason for t in terms)
    assert end == 62.0
    # Work queued again at zero grows the spec again.
    s.submit("again", tasks(1, "u"), 100.0)
    play.until_idle(100.0)
    assert s.task_states("again") == {"u0": TaskState.SUCCEEDED}
    assert play.live == 0


def test_min_instances_kept_when_idle() -> None:
    s = scheduler(lo=1, hi=3, spawn_threshold=0, scale_up_window_s=0.0)
    play = Play(s)
    play.carry_out(
        [SpawnAgent(0.0, None, None, "min_instances", "w", i.id) for i in s.agents.values()], 0.0
    )
    s.submit("r", tasks(9), 0.0)
    play.until_idle(0.0)
    assert (play.peak, play.live) == (3, 1)


@pytest.mark.parametrize(
    ("mins", "refused", "message"),
    [
        ((51,), "a", "min_instances 51 would start 51 instances, more than max_agents 50"),
        ((30, 21), "b", "min_instances 21 (30 asked by the agents before it) would start 51"),
    ],
)
def test_min_instances_over_max_agents_is_refused(
    mins: tuple[int, ...], refused: str, message: str
) -> None:
    s = Scheduler()
    specs = [
        agent_spec(name, {"x": 0.9}, min_instances=n, max_instances=n)
        for name, n in zip("ab", mins, strict=False)
    ]
    for spec in specs[:-1]:
        s.add_spec(spec, 0.0)
    with pytest.raises(WorkflowError) as info:
        s.add_spec(specs[-1], 0.0)
    assert info.value.where == f"agent {refused!r}"
    assert message in str(info.value)
    assert len(s.agents) == sum(mins) - mins[-1]  # the refused spec spawned nothing


def test_min_instances_up_to_max_agents_is_accepted() -> None:
    s = Scheduler(SchedulerConfig(pool=PoolPolicy(max_agents=5)))
    s.add_spec(agent_spec("a", {"x": 0.9}, min_instances=2, max_instances=4), 0.0)
    s.add_spec(agent_spec("b", {"x": 0.9}, min_instances=3, max_instances=3), 0.0)
    assert len(s.agents) == 5


def test_a_workflow_scaled_to_zero_completes_on_the_runtime() -> None:
    clock = ManualClock()

    async def main() -> dict[str, TaskState]:
        spec = agent_spec("w", {"x": 0.9}, echo_runner(), min_instances=0, max_instances=3)
        async with Orchestrator([spec], clock=clock) as orch:
            batch = await orch.execute_batch(tasks(2))
        return {r.task_id: r.state for r in batch.results}

    assert run_virtual(main(), clock=clock) == {
        "t0": TaskState.SUCCEEDED,
        "t1": TaskState.SUCCEEDED,
    }


def test_work_queued_while_the_last_instance_drains_grows_after_the_cooldown() -> None:
    s = scheduler(spawn_threshold=5)  # cooldown 5 s, idle timeout 60 s
    s.submit("r", tasks(1), 0.0)
    s.tick(0.0)
    s.agent_ready("w#1", 0.0)
    (route,) = decisions_of(s.tick(0.0), RouteTask)
    s.finish("r", "t0", route.attempt, Outcome.SUCCEEDED, 1.0)
    assert [t.instance for t in decisions_of(s.tick(61.0), TerminateAgent)] == ["w#1"]
    # w#1 drains and has not stopped yet: it serves nothing, so the queue counts as unserved.
    s.submit("again", tasks(1, "u"), 62.0)
    assert decisions_of(s.tick(62.0), SpawnAgent) == []  # within the cooldown of the shrink
    assert s.next_wakeup() == 66.0
    (spawn,) = decisions_of(s.tick(66.0), SpawnAgent)
    assert spawn.instance == "w#2"
