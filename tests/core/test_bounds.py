"""Bounds that hold: decomposition within the queue bound and the plan-size cap, forgotten runs
leave nothing behind, retired instances are capped, the circuit breaker counts agent faults only,
and every attempt has a time limit by default. All on virtual time; nothing sleeps."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    FunctionRunner,
    ManualClock,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    Scheduler,
    SchedulerConfig,
    TaskState,
)
from metaagent.core.decisions import (
    DecomposeTask,
    FailTask,
    QuarantineAgent,
    RetryTask,
    RouteTask,
)
from metaagent.core.health import HealthPolicy, is_agent_fault
from metaagent.core.tasks import Attempt, Decompose
from metaagent.runtime.virtual import run_virtual
from metaagent.testing import NO_JITTER_RETRY, agent_spec, decisions_of, run_until_idle

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext
    from metaagent.core.decisions import Output

WORKER = agent_spec("w", {"code": 0.9, "plan": 0.9}, concurrency=8)


def scheduler(**config: object) -> Scheduler:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY, **config))  # type: ignore[arg-type]
    s.add_agent(WORKER, 0.0)
    return s


def steps(n: int) -> dict[str, object]:
    return {"tasks": [{"id": f"s{i}", "capability": "code"} for i in range(n)]}


# --- decomposition obeys the queue bound and the plan-size cap --------------------------------

PLAN_TABLE = [
    # (why, max_queued, max_plan_tasks, other open tasks, plan size, open tasks after, reason)
    ("within both bounds", 10, 5, 0, 5, 6, None),
    ("one over max_plan_tasks", 100, 5, 0, 6, 1, "at most 5 are allowed (max_plan_tasks)"),
    ("the planner and its plan fill the queue exactly", 6, 1_000, 0, 5, 6, None),
    ("one over max_queued", 5, 1_000, 0, 5, 1, "queue full: 1 tasks are queued"),
    ("other runs' open tasks count", 10, 1_000, 4, 6, 5, "queue full: 5 tasks are queued"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("max_queued", "max_plan", "others", "size", "queued", "reason"),
    [pytest.param(*row[1:], id=row[0]) for row in PLAN_TABLE],
)
def test_a_planner_plan_past_a_bound_fails_its_attempt_with_the_reason_as_feedback(
    max_queued: int, max_plan: int, others: int, size: int, queued: int, reason: str | None
) -> None:
    s = scheduler(max_queued=max_queued, max_plan_tasks=max_plan)
    if others:
        s.submit("other", [AgentTask(f"o{i}", "code") for i in range(others)], 0.0)
    planner = AgentTask("p", "plan", max_attempts=2, decompose=Decompose(planner=True))
    s.submit("r", [planner], 0.0)
    (route,) = [d for d in s.tick(0.0) if isinstance(d, RouteTask) and d.run_id == "r"]
    outs = s.finish("r", "p", route.attempt, Outcome.SUCCEEDED, 1.0, output=steps(size))
    rec = s.task("r", "p")
    told = [] if reason is None else [True]
    # Expanded, or nothing of the plan added; the planner is told why, and may retry.
    assert (len(decisions_of(outs, DecomposeTask)), s.queued) == (1 - len(told), queued)
    assert [reason in r.reason for r in decisions_of(outs, RetryTask)] == told
    assert [reason in p for p in rec.feedback] == told
    assert rec.attempts[-1].outcome is (Outcome.ERROR if told else Outcome.SUCCEEDED)


def test_a_planner_that_shrinks_its_plan_after_the_feedback_is_expanded() -> None:
    s = scheduler(max_plan_tasks=3)
    s.submit("r", [AgentTask("p", "plan", decompose=Decompose(planner=True))], 0.0)
    (a,) = decisions_of(s.tick(0.0), RouteTask)
    s.finish("r", "p", a.attempt, Outcome.SUCCEEDED, 1.0, output=steps(4))
    (b,) = decisions_of(s.tick(100.0), RouteTask)
    outs = s.finish("r", "p", b.attempt, Outcome.SUCCEEDED, 101.0, output=steps(3))
    (dec,) = decisions_of(outs, DecomposeTask)
    assert dec.subtasks == ("p/s0", "p/s1", "p/s2")
    run_until_idle(s, 101.0)
    assert s.task("r", "p").state is TaskState.SUCCEEDED


TEMPLATE_TABLE = [
    # (why, max_queued, max_plan_tasks, template size, the error that fails it)
    ("within both bounds", 10, 5, 5, None),
    ("over max_plan_tasks", 100, 5, 6, "the plan has 6 sub-tasks; at most 5"),
    ("over max_queued (the issue: max_queued 5 reached 51)", 5, 1_000, 50,
     "queue full: 2 tasks are queued and the bound is 5 (max_queued); a plan of 50"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("max_queued", "max_plan", "size", "error"),
    [pytest.param(*row[1:], id=row[0]) for row in TEMPLATE_TABLE],
)
def test_a_template_past_a_bound_fails_its_task_with_a_clear_error(
    max_queued: int, max_plan: int, size: int, error: str | None
) -> None:
    s = scheduler(max_queued=max_queued, max_plan_tasks=max_plan)
    template = tuple(AgentTask(f"s{i}", "code") for i in range(size))
    parent = AgentTask("big", "feature", decompose=Decompose(template=template))
    after = AgentTask("after", "code", depends_on=("big",))
    outs = s.submit("r", [parent, after], 0.0)
    assert s.queued <= max_queued
    if error is None:
        assert len(decisions_of(outs, DecomposeTask)) == 1
        return
    (fail,) = decisions_of(outs, FailTask)
    assert (fail.task_id, error in fail.reason) == ("big", True)
    assert s.task_states("r") == {"big": TaskState.FAILED, "after": TaskState.SKIPPED}
    assert (s.runs["r"].finished_at, s.queued) == (0.0, 0)  # nothing is left open


def test_the_queue_bound_holds_through_every_expansion() -> None:
    # Many decomposed tasks at once, each within max_plan_tasks: those that would pass the
    # bound fail, and the count of open tasks never goes over it.
    s = scheduler(max_queued=7)
    template = tuple(AgentTask(f"s{i}", "code") for i in range(2))
    parents = [AgentTask(f"d{i}", "feature", decompose=Decompose(template=template))
               for i in range(5)]  # fmt: skip
    outs = s.submit("r", parents, 0.0)
    # 5 open: d0 expands (7), d1 fails (6), d2 fails (8 > 7; 5), d3 expands (7), d4 fails (6).
    assert s.queued == 6
    assert [d.task_id for d in decisions_of(outs, DecomposeTask)] == ["d0", "d3"]
    assert [d.task_id for d in decisions_of(outs, FailTask)] == ["d1", "d2", "d4"]
    run_until_idle(s)
    assert s.runs["r"].finished_at is not None


def test_max_plan_tasks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_plan_tasks must be at least 1"):
        Scheduler(SchedulerConfig(max_plan_tasks=0))


# --- forgotten runs leave nothing behind ------------------------------------------------------


def _sizes(s: Scheduler) -> dict[str, int]:
    """The size of every container of the core's state: the scheduler's, its queues', its
    router's and its pool's."""
    out: dict[str, int] = {}
    owners: dict[str, object] = {
        "scheduler": s, "queues": s.queues, "router": s.router, "pool": s.pool,
        "learning": s.learning,
    }  # fmt: skip
    for owner_name, owner in owners.items():
        names = set(getattr(owner, "__dict__", {})) | set(getattr(type(owner), "__slots__", ()))
        for name in sorted(names):
            value = getattr(owner, name, None)
            if isinstance(value, dict | list | set | tuple) or hasattr(value, "__len__"):
                try:
                    out[f"{owner_name}.{name}"] = len(value)  # type: ignore[arg-type]
                except TypeError:
                    continue
    out["queues.lane entries"] = sum(
        len(lane.heap) for lanes in s.queues.lanes.values() for lane in lanes.values()
    )
    out["queues.parked entries"] = sum(len(h) for h in s.queues.parked.values())
    return out


def _one_run(s: Scheduler, k: int, now: float) -> float:
    """Submit a run with groups (affinity) and a task cancelled while queued, finish it, forget
    it; return the time after it."""
    tasks = [
        AgentTask(f"a{k}", "code", group=f"g{k}"),
        AgentTask(f"b{k}", "code", group=f"g{k}", depends_on=(f"a{k}",)),
        AgentTask(f"c{k}", "code", group="shared"),
        *(AgentTask(f"q{k}-{i}", "code", priority=-1) for i in range(6)),
    ]
    run = f"run{k}"
    s.submit(run, tasks, now)
    s.cancel(run, [f"q{k}-{i}" for i in range(6)], now)  # queued behind the others
    run_until_idle(s, now)
    now = max(now, *(r.finished_at or 0.0 for r in s.runs[run].tasks.values())) + 1.0
    s.forget(run)
    return now


def test_a_long_loop_of_submit_finish_forget_leaves_the_core_as_it_was() -> None:
    s = scheduler()
    now = 0.0
    for k in range(20):
        now = _one_run(s, k, now)
    before = _sizes(s)
    for k in range(20, 1_020):
        now = _one_run(s, k, now)
    after = _sizes(s)
    grown = {k: (before.get(k), n) for k, n in after.items() if n > before.get(k, 0)}
    assert grown == {}
    assert s.runs == {}
    assert s.queued == 0


def test_tasks_cancelled_behind_a_queue_that_never_drains_are_not_kept() -> None:
    # The only "slow" agent is busy for good and a live task waits at the head of its queue:
    # the entries of cancelled tasks below it (and their forgotten runs) must not pile up.
    s = scheduler()
    s.add_agent(agent_spec("s", {"slow": 0.9}), 0.0)
    s.submit("held", [AgentTask("busy", "slow", priority=9), AgentTask("head", "slow")], 0.0)
    assert [d.task_id for d in decisions_of(s.tick(0.0), RouteTask)] == ["busy"]
    for k in range(1_000):
        run = f"r{k}"
        s.submit(run, [AgentTask(f"x{i}", "slow", priority=-1) for i in range(6)], float(k))
        s.tick(float(k))
        s.cancel(run, None, float(k))
        s.forget(run)
    assert sum(len(lane.heap) for lane in s.queues.lanes["slow"].values()) <= 2 * 64
    assert s.queue_depth() == {"slow": 1}


def test_forget_drops_the_runs_affinity() -> None:
    s = scheduler()
    s.submit("r", [AgentTask("a", "code", group="g")], 0.0)
    run_until_idle(s)
    run = s.runs["r"]
    assert set(run.affinity) == {"g"}  # kept on the run, so it goes with it
    s.forget("r")
    assert "r" not in s.runs


# --- the retired instances are capped -----------------------------------------------------------


def test_the_retired_instances_kept_are_the_latest_thousand_and_ids_never_repeat() -> None:
    h = HealthPolicy(restart_backoff_s=0.5, restart_backoff_max_s=0.5, restart_jitter=0.0)
    s = Scheduler(SchedulerConfig(health=h))
    s.add_spec(agent_spec("w", {"code": 0.9}), 0.0)
    now = 0.0
    seen: list[str] = []
    for _ in range(1_100):
        (iid,) = s.agents
        s.agent_ready(iid, now)
        seen.append(iid)
        s.agent_lost(iid, now, "killed")
        now += 1.0
        s.tick(now)  # the restart is due: a new instance
    pool = s.pool
    assert len(pool.retired) == 1_000
    assert pool.retired_total == 1_100
    assert [i.id for i in pool.retired] == seen[-1_000:]  # the latest ones, in order
    assert len(set(seen)) == 1_100  # no id given twice, though old ones are not remembered
    assert seen[:3] == ["w", "w#2", "w#3"]


# --- the circuit breaker counts agent faults only -----------------------------------------------

FAULT_TABLE = [
    # (outcome, the same task faulted on this instance before, counts against the breaker)
    (Outcome.CRASH, False, True),
    (Outcome.LOST, False, True),
    (Outcome.ERROR, False, False),
    (Outcome.TIMEOUT, False, False),
    (Outcome.VERIFY_FAILED, False, False),
    (Outcome.SUCCEEDED, False, False),
    (Outcome.CANCELLED, False, False),
    (Outcome.CRASH, True, False),  # one poison task counts once per instance
]


@pytest.mark.parametrize(("outcome", "before", "counts"), FAULT_TABLE)
def test_is_agent_fault(outcome: Outcome, before: bool, counts: bool) -> None:
    earlier = [Attempt(1, "w", "w", 0.0, 1.0, Outcome.CRASH)] if before else []
    earlier.append(Attempt(2, "w", "w#2", 1.0, 2.0, Outcome.CRASH))  # another instance's
    assert is_agent_fault(outcome, "w", earlier) is counts


BREAKER_TABLE = [
    # (outcome of three different tasks in a row on the only instance, quarantined?)
    (Outcome.ERROR, False),
    (Outcome.TIMEOUT, False),
    (Outcome.VERIFY_FAILED, False),
    (Outcome.CRASH, True),
    (Outcome.LOST, True),
]


@pytest.mark.parametrize(("outcome", "quarantined"), BREAKER_TABLE)
def test_three_failed_tasks_quarantine_the_only_agent_only_for_agent_faults(
    outcome: Outcome, quarantined: bool
) -> None:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY, health=HealthPolicy(breaker_failures=3)))
    s.add_agent(agent_spec("w", {"code": 0.9}), 0.0)
    s.submit("r", [AgentTask(f"t{i}", "code", max_attempts=1) for i in range(4)], 0.0)
    outs: list[Output] = []
    for k in range(3):
        (route,) = decisions_of(s.tick(float(k)), RouteTask)
        outs += s.finish("r", route.task_id or "", route.attempt, outcome, k + 0.5)
    assert bool(decisions_of(outs, QuarantineAgent)) is quarantined
    assert bool(decisions_of(s.tick(3.0), RouteTask)) is not quarantined


def test_a_poison_task_fails_alone_on_healthy_agents() -> None:
    # A task that fails on every agent (a bad input) fails after max_attempts, with every
    # attempt listed; no breaker opens, and the other tasks run on the same agents.
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY, health=HealthPolicy(breaker_failures=1)))
    for name in ("a", "b", "c"):
        s.add_agent(agent_spec(name, {"code": 0.9}), 0.0)
    tasks = [AgentTask("poison", "code", max_attempts=3),
             *(AgentTask(f"ok{i}", "code") for i in range(6))]  # fmt: skip
    s.submit("r", tasks, 0.0)
    outs = run_until_idle(s, failing={"poison"})
    assert decisions_of(outs, QuarantineAgent) == []
    (fail,) = decisions_of(outs, FailTask)
    assert fail.task_id == "poison"
    assert "all 3 attempts failed" in fail.reason
    poison = s.task("r", "poison")
    assert sorted(a.agent for a in poison.attempts) == ["a", "b", "c"]  # each tried once
    assert s.task_states("r") == {
        "poison": TaskState.FAILED,
        **{f"ok{i}": TaskState.SUCCEEDED for i in range(6)},
    }


def test_a_task_that_crashes_its_agent_again_and_again_trips_no_breaker_alone() -> None:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY, health=HealthPolicy(breaker_failures=2)))
    s.add_agent(agent_spec("w", {"code": 0.9}), 0.0)
    s.submit("r", [AgentTask("poison", "code", max_attempts=3)], 0.0)
    outs: list[Output] = []
    now = 0.0
    while s.task("r", "poison").state is not TaskState.FAILED:
        routes = decisions_of(s.tick(now), RouteTask)
        for route in routes:
            outs += s.finish("r", "poison", route.attempt, Outcome.CRASH, now + 0.5)
        now = s.next_wakeup() or now + 1.0
    assert decisions_of(outs, QuarantineAgent) == []
    assert s.agents["w"].consecutive_failures == 1  # counted once, not three times


# --- every attempt has a time limit by default -------------------------------------------------

TIMEOUT_TABLE = [
    # (why, config's default_timeout_s, task's timeout_s, the attempt's time)
    ("the default: one hour", "default", None, 3600.0),
    ("the task's own limit wins", "default", 60.0, 60.0),
    ("a default set explicitly", 10.0, None, 10.0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("default", "own", "ended_at"), [pytest.param(*row[1:], id=row[0]) for row in TIMEOUT_TABLE]
)
def test_a_hung_agent_times_out_by_default(
    default: float | str, own: float | None, ended_at: float
) -> None:
    clock = ManualClock()

    async def hangs(ctx: AttemptContext) -> None:
        await asyncio.Event().wait()

    config = OrchestratorConfig() if default == "default" else OrchestratorConfig(
        default_timeout_s=float(default)
    )  # fmt: skip

    async def main() -> None:
        agent = AgentSpec("a", {"code": 0.9}, FunctionRunner(hangs))
        async with Orchestrator([agent], config, clock=clock) as orch:
            batch = await orch.execute_batch([AgentTask("t", "code", timeout_s=own,
                                                        max_attempts=1)])  # fmt: skip
        (attempt,) = batch.result("t").attempts
        assert attempt.outcome is Outcome.TIMEOUT
        assert attempt.duration_s == pytest.approx(ended_at)

    run_virtual(main(), clock=clock)


def test_the_default_timeout_is_an_hour_and_none_means_no_limit() -> None:
    assert OrchestratorConfig().default_timeout_s == 3600.0
    assert OrchestratorConfig(default_timeout_s=None).default_timeout_s is None
