"""The sans-I/O scheduler, driven on virtual time: every call carries an explicit ``now``."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaagent import (
    AgentSpec,
    AgentTask,
    CancelTask,
    CapacityError,
    CycleError,
    FailTask,
    FunctionRunner,
    OptimizeWorkflow,
    Outcome,
    RetryPolicy,
    RetryTask,
    RouteTask,
    Scheduler,
    SchedulerConfig,
    SkipTask,
    TaskState,
    UnknownCapabilityError,
    WorkflowError,
)
from metaagent.core.decisions import Output, RunCompleted, TaskCompleted
from metaagent.core.retry import compute_backoff
from metaagent.testing import decisions_of, routed_task_ids, task

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

NO_JITTER = RetryPolicy(base_s=1.0, max_s=30.0, jitter=0.0)
NOOP = FunctionRunner(lambda ctx: None)  # specs need a runner; the pure core never calls it


def make(specs: Sequence[AgentSpec], **config: object) -> Scheduler:
    config.setdefault("retry", NO_JITTER)
    s = Scheduler(SchedulerConfig(**config))  # type: ignore[arg-type]
    for spec in specs:
        s.add_agent(spec, now=0.0)
    return s


def state(s: Scheduler, run: str, tid: str) -> TaskState:
    return s.task(run, tid).state


@pytest.fixture
def one(make_spec: Callable[..., AgentSpec]) -> Scheduler:
    """One agent with one slot for "code": dispatch order is observable one task at a time."""
    return make([make_spec("solo", {"code": 0.8})])


# --- submission -------------------------------------------------------------------------------


def test_submit_validates_atomically(make_spec: Callable[..., AgentSpec]) -> None:
    s = make([make_spec("a", {"code": 0.9}), make_spec("b", {"test": 0.9})], max_queued=100)
    good = [task("x"), task("y", "x")]
    with pytest.raises(WorkflowError, match="unknown task 'ghost'"):
        s.submit("r1", [*good, task("z", "ghost")], now=0.0)
    with pytest.raises(CycleError):
        s.submit("r1", [*good, task("p", "q"), task("q", "p")], now=0.0)
    with pytest.raises(UnknownCapabilityError) as info:
        s.submit("r1", [*good, task("d", capability="design")], now=0.0)
    err = info.value
    assert err.capability == "design"
    assert err.known == ("code", "test")
    assert err.where == "tasks[2] (id 'd').capability"
    assert "known capabilities: code, test" in str(err)
    # Nothing of the refused batches was accepted.
    assert s.queued == 0
    assert s.runs == {}
    assert s.dispatch(now=1.0) == []
    assert s.running == 0
    # The run id was not taken by a refused batch.
    outs = s.submit("r1", good, now=2.0)
    assert decisions_of(outs, OptimizeWorkflow) == []
    assert routed_task_ids(s.dispatch(now=2.0)) == ["x"]


def test_duplicate_run_id_is_refused(one: Scheduler) -> None:
    one.submit("r", [task("a")], now=0.0)
    with pytest.raises(WorkflowError, match="run 'r' already exists"):
        one.submit("r", [task("b")], now=0.0)
    assert one.queued == 1


def test_unknown_capability_with_no_agents_says_so() -> None:
    s = Scheduler()
    with pytest.raises(UnknownCapabilityError, match=r"no agents registered"):
        s.submit("r", [task("a")], now=0.0, where="flow.yaml")


def test_capacity_bound_refuses_without_dropping_anything(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = make([make_spec("solo", {"code": 0.8})], max_queued=3)
    s.submit("r1", [task("a"), task("b")], now=0.0)
    with pytest.raises(CapacityError) as info:
        s.submit("r2", [task("c"), task("d")], now=0.0)
    assert info.value.bound == 3
    assert "queue full" in str(info.value)
    assert "nothing accepted was dropped" in str(info.value)
    assert s.queued == 2
    assert "r2" not in s.runs
    # Everything accepted still runs to the end.
    r = s.dispatch(now=0.0)
    assert routed_task_ids(r) == ["a"]
    s.finish("r1", "a", 1, Outcome.SUCCEEDED, now=1.0)
    assert s.queued == 1
    # Room was made: a batch of two fits now (1 + 2 <= 3), one more would not.
    s.submit("r2", [task("c"), task("d")], now=1.0)
    assert s.queued == 3
    with pytest.raises(CapacityError):
        s.submit("r3", [task("e")], now=1.0)
    assert [state(s, "r1", t) for t in ("a", "b")] == [TaskState.SUCCEEDED, TaskState.READY]


def test_invalid_config_and_agents_are_refused(make_spec: Callable[..., AgentSpec]) -> None:
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        Scheduler(SchedulerConfig(max_concurrency=0))
    with pytest.raises(ValueError, match="max_queued must be at least 1"):
        Scheduler(SchedulerConfig(max_queued=0))
    s = Scheduler()
    with pytest.raises(WorkflowError, match=r"proficiency must be within 0..1, got 1.5"):
        s.add_agent(make_spec("bad", {"code": 1.5}), now=0.0)
    with pytest.raises(WorkflowError, match="concurrency: must be at least 1"):
        s.add_agent(make_spec("bad", {"code": 0.5}, concurrency=0), now=0.0)
    s.add_agent(make_spec("ok", {"code": 0.5}), now=0.0)
    with pytest.raises(WorkflowError, match="duplicate agent instance 'ok'"):
        s.add_agent(make_spec("ok", {"code": 0.5}), now=0.0)
    assert list(s.agents) == ["ok"]


def test_empty_batch_completes_at_once(one: Scheduler) -> None:
    outs = one.submit("r", [], now=5.0)
    assert decisions_of(outs, RunCompleted) == [RunCompleted(5.0, "r")]
    assert one.runs["r"].finished_at == 5.0


# --- ordering ---------------------------------------------------------------------------------


def drain_in_order(s: Scheduler, run: str, now: float = 0.0) -> list[str]:
    """Run everything one at a time on a one-slot pool; return the order tasks were routed."""
    order: list[str] = []
    outs: list[Output] = list(s.dispatch(now))
    while True:
        routes = decisions_of(outs, RouteTask)
        if not routes:
            return order
        assert len(routes) == 1
        r = routes[0]
        order.append(r.task_id)
        now += 1.0
        outs = s.finish(run, r.task_id, r.attempt, Outcome.SUCCEEDED, now)
        outs += s.tick(now)


def test_higher_priority_runs_first(one: Scheduler) -> None:
    one.submit("r", [task("low"), task("high", priority=5), task("mid", priority=2)], now=0.0)
    assert drain_in_order(one, "r") == ["high", "mid", "low"]


def test_equal_priority_runs_the_critical_path_first(one: Scheduler) -> None:
    outs = one.submit(
        "r", [task("short"), task("long"), task("l2", "long"), task("l3", "l2")], now=0.0
    )
    (opt,) = decisions_of(outs, OptimizeWorkflow)
    assert opt.order == ("long", "short")
    assert opt.changes["long"] > opt.changes["short"]
    assert "critical-path" in opt.reason
    # When "long" ends, "l2" carries more work below it than "short" and jumps ahead of it.
    assert drain_in_order(one, "r") == ["long", "l2", "short", "l3"]


def test_priority_beats_critical_path_and_age_breaks_ties(one: Scheduler) -> None:
    tasks = [task("long"), task("l2", "long"), task("a", priority=1), task("b", priority=1)]
    one.submit("r", tasks, now=0.0)
    assert drain_in_order(one, "r") == ["a", "b", "long", "l2"]


def test_submission_order_kept_when_nothing_to_optimise(one: Scheduler) -> None:
    outs = one.submit("r", [task("a"), task("b"), task("c")], now=0.0)
    assert decisions_of(outs, OptimizeWorkflow) == []
    assert drain_in_order(one, "r") == ["a", "b", "c"]


# --- limits -----------------------------------------------------------------------------------


def test_global_max_concurrency_is_respected(make_spec: Callable[..., AgentSpec]) -> None:
    specs = [make_spec(n, {"code": 0.8}, concurrency=2) for n in ("a", "b", "c")]
    s = make(specs, max_concurrency=4)
    s.submit("r", [task(f"t{i}") for i in range(10)], now=0.0)
    first = decisions_of(s.dispatch(now=0.0), RouteTask)
    assert len(first) == 4
    assert s.running == 4
    assert s.dispatch(now=0.1) == []  # nothing more while the limit is reached
    s.finish("r", first[0].task_id, 1, Outcome.SUCCEEDED, now=1.0)
    assert len(decisions_of(s.tick(now=1.0), RouteTask)) == 1
    assert s.peak_running == 4
    assert all(i.running <= i.slots for i in s.agents.values())


def test_per_agent_slots_are_respected(make_spec: Callable[..., AgentSpec]) -> None:
    s = make([make_spec("duo", {"code": 0.8}, concurrency=2)], max_concurrency=10)
    s.submit("r", [task(f"t{i}") for i in range(5)], now=0.0)
    first = decisions_of(s.dispatch(now=0.0), RouteTask)
    assert [r.instance for r in first] == ["duo", "duo"]
    assert s.agents["duo"].running == 2
    assert s.dispatch(now=0.5) == []
    s.finish("r", first[1].task_id, 1, Outcome.SUCCEEDED, now=1.0)
    assert s.agents["duo"].running == 1
    again = decisions_of(s.tick(now=1.0), RouteTask)
    assert len(again) == 1
    assert s.agents["duo"].running == 2


def test_no_task_is_routed_before_its_dependencies_succeeded(one: Scheduler) -> None:
    one.submit("r", [task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")], now=0.0)
    assert state(one, "r", "d") is TaskState.PENDING
    order = drain_in_order(one, "r")
    assert order == ["a", "b", "c", "d"]
    res = {r.task_id: r for r in one.results("r")}
    assert res["d"].ready_at == res["c"].finished_at  # released when its last dependency ended


# --- failure, retry, fallback -----------------------------------------------------------------


def test_failure_skips_every_transitive_dependent_naming_the_upstream(one: Scheduler) -> None:
    one.submit(
        "r", [task("a", max_attempts=1), task("b", "a"), task("c", "b"), task("free")], now=0.0
    )
    assert routed_task_ids(one.dispatch(now=0.0)) == ["a"]
    outs = one.finish("r", "a", 1, Outcome.ERROR, now=2.0, error="Traceback...\nValueError: no")
    (fail,) = decisions_of(outs, FailTask)
    assert fail.task_id == "a"
    skips = decisions_of(outs, SkipTask)
    assert [(k.task_id, k.upstream) for k in skips] == [("b", "a"), ("c", "a")]
    assert all(k.reason == "upstream task 'a' failed" for k in skips)
    assert decisions_of(outs, RunCompleted) == []  # "free" is still open
    assert routed_task_ids(one.tick(now=2.0)) == ["free"]
    outs = one.finish("r", "free", 1, Outcome.SUCCEEDED, now=3.0)
    assert decisions_of(outs, RunCompleted) == [RunCompleted(3.0, "r")]
    res = {r.task_id: r for r in one.results("r")}
    assert res["a"].state is TaskState.FAILED
    assert res["a"].error == "Traceback...\nValueError: no"
    assert res["c"].state is TaskState.SKIPPED
    assert res["c"].error == "upstream task 'a' failed"
    assert res["c"].attempts == []
    assert res["free"].state is TaskState.SUCCEEDED
    assert one.queued == 0


def test_failed_attempt_is_retried_after_backoff_on_a_different_agent(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = make([make_spec("alpha", {"code": 0.9}), make_spec("beta", {"code": 0.6})])
    s.submit("r", [task("t", max_attempts=3)], now=0.0)
    (first,) = decisions_of(s.dispatch(now=0.0), RouteTask)
    assert (first.spec, first.attempt) == ("alpha", 1)  # the stronger agent first

    outs = s.finish("r", "t", 1, Outcome.ERROR, now=10.0, error="boom")
    (retry,) = decisions_of(outs, RetryTask)
    assert retry.next_attempt == 2
    assert retry.delay_s == 1.0  # base_s * 2**0, no jitter
    assert retry.failed_agent == "alpha"
    assert retry.avoid == ("alpha",)
    assert "attempt 1 on alpha ended error: boom" in retry.reason
    assert "preferring another agent (beta)" in retry.reason
    assert state(s, "r", "t") is TaskState.READY
    assert s.next_wakeup() == 11.0

    # Both agents are free, but the back-off holds the retry until 11.0.
    assert s.tick(now=10.999) == []
    (second,) = decisions_of(s.tick(now=11.0), RouteTask)
    assert (second.spec, second.attempt) == ("beta", 2)
    assert "not back on alpha, which failed it" in second.reason

    outs = s.finish("r", "t", 2, Outcome.TIMEOUT, now=12.0, error="timed out")
    (retry2,) = decisions_of(outs, RetryTask)
    assert retry2.delay_s == 2.0  # exponential: base_s * 2**1
    assert retry2.avoid == ("alpha", "beta")
    assert "no other agent offers this capability" in retry2.reason
    assert s.tick(now=13.999) == []
    (third,) = decisions_of(s.tick(now=14.0), RouteTask)
    assert third.attempt == 3  # every spec failed once: any may take it
    assert third.spec == "alpha"

    outs = s.finish("r", "t", 3, Outcome.CRASH, now=15.0, error="killed")
    (fail,) = decisions_of(outs, FailTask)
    assert (
        fail.reason == "all 3 attempts failed (#1 alpha: error; #2 beta: timeout; #3 alpha: crash)"
    )
    assert decisions_of(outs, RunCompleted) == [RunCompleted(15.0, "r")]
    (res,) = s.results("r")
    assert res.state is TaskState.FAILED
    assert [(a.number, a.agent, a.outcome) for a in res.attempts] == [
        (1, "alpha", Outcome.ERROR),
        (2, "beta", Outcome.TIMEOUT),
        (3, "alpha", Outcome.CRASH),
    ]
    assert [(a.started_at, a.finished_at) for a in res.attempts] == [
        (0.0, 10.0),
        (11.0, 12.0),
        (14.0, 15.0),
    ]
    assert res.error == "killed"


def test_backoff_is_capped_and_jittered_deterministically() -> None:
    import random

    policy = RetryPolicy(base_s=1.0, max_s=5.0, jitter=0.1)
    delays = [compute_backoff(policy, n, random.Random(3)) for n in range(1, 6)]
    assert delays == [compute_backoff(policy, n, random.Random(3)) for n in range(1, 6)]
    for n, d in enumerate(delays, start=1):
        base = min(5.0, 2.0 ** (n - 1))
        assert base <= d <= base * 1.1
    assert (
        compute_backoff(RetryPolicy(base_s=1.0, max_s=5.0, jitter=0.0), 10, random.Random()) == 5.0
    )


def test_retry_waits_for_the_other_agent_rather_than_repeating_the_failed_one(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = make([make_spec("alpha", {"code": 0.9}), make_spec("beta", {"code": 0.6})])
    s.submit("r", [task("t"), task("busy")], now=0.0)
    assert routed_task_ids(s.dispatch(now=0.0)) == ["t", "busy"]
    assert s.task("r", "busy").attempts[0].agent == "beta"
    s.finish("r", "t", 1, Outcome.ERROR, now=1.0)
    # alpha is free, but alpha just failed "t" and beta is alive: the retry waits for beta.
    assert s.tick(now=5.0) == []
    s.finish("r", "busy", 1, Outcome.SUCCEEDED, now=6.0)
    (r,) = decisions_of(s.tick(now=6.0), RouteTask)
    assert (r.task_id, r.spec, r.attempt) == ("t", "beta", 2)


# --- fencing ----------------------------------------------------------------------------------


def test_stale_results_are_rejected(make_spec: Callable[..., AgentSpec]) -> None:
    s = make([make_spec("alpha", {"code": 0.9}), make_spec("beta", {"code": 0.6})])
    s.submit("r", [task("t")], now=0.0)
    s.dispatch(now=0.0)
    # A result for an attempt that never started changes nothing.
    assert s.finish("r", "t", 2, Outcome.SUCCEEDED, now=1.0, output="forged") == []
    assert s.stale_results == 1
    assert state(s, "r", "t") is TaskState.RUNNING
    s.finish("r", "t", 1, Outcome.ERROR, now=2.0)
    (r2,) = decisions_of(s.tick(now=3.0), RouteTask)
    assert r2.attempt == 2
    # The first attempt reports late (it was not really dead): rejected.
    assert s.finish("r", "t", 1, Outcome.SUCCEEDED, now=3.5, output="late") == []
    assert s.stale_results == 2
    assert state(s, "r", "t") is TaskState.RUNNING
    assert s.agents["beta"].running == 1
    outs = s.finish("r", "t", 2, Outcome.SUCCEEDED, now=4.0, output="real")
    assert decisions_of(outs, TaskCompleted) == [TaskCompleted(4.0, "r", "t")]
    # A duplicate of a recorded terminal result, and results for unknown runs or tasks.
    assert s.finish("r", "t", 2, Outcome.ERROR, now=5.0) == []
    assert s.finish("nope", "t", 1, Outcome.SUCCEEDED, now=5.0) == []
    assert s.finish("r", "nope", 1, Outcome.SUCCEEDED, now=5.0) == []
    assert s.stale_results == 5
    (res,) = s.results("r")
    assert (res.state, res.output) == (TaskState.SUCCEEDED, "real")
    assert s.running == 0


# --- cancellation -----------------------------------------------------------------------------


def test_cancel_running_task_frees_its_slot_once_stopped_and_skips_dependents(
    one: Scheduler,
) -> None:
    one.submit("r", [task("a"), task("b", "a"), task("other")], now=0.0)
    assert routed_task_ids(one.dispatch(now=0.0)) == ["a"]
    outs = one.cancel("r", ["a"], now=1.0)
    (c,) = decisions_of(outs, CancelTask)
    assert (c.task_id, c.was_running, c.instance) == ("a", True, "solo")
    assert [(k.task_id, k.upstream) for k in decisions_of(outs, SkipTask)] == [("b", "a")]
    assert decisions_of(outs, SkipTask)[0].reason == "upstream task 'a' cancelled"
    assert state(one, "r", "a") is TaskState.CANCELLED
    # Until the runtime says the attempt's work stopped, its slot stays taken.
    assert one.agents["solo"].running == 1
    assert list(one.stopping) == [("r", "a", 1)]
    assert routed_task_ids(one.dispatch(now=1.2)) == []
    assert one.stopped("r", "a", 1, now=1.5) == []
    assert one.stopping == {}
    assert one.agents["solo"].running == 0
    assert one.running == 0
    assert one.stopped("r", "a", 1, now=1.6) == []  # told twice: nothing more happens
    assert one.running == 0
    assert routed_task_ids(one.dispatch(now=1.6)) == ["other"]
    # The cancelled attempt reports afterwards: rejected.
    assert one.finish("r", "a", 1, Outcome.SUCCEEDED, now=2.0) == []
    assert state(one, "r", "a") is TaskState.CANCELLED
    (att,) = one.task("r", "a").attempts
    assert att.outcome is Outcome.CANCELLED


def test_cancel_pending_task_stays_cancelled_when_its_upstream_succeeds(one: Scheduler) -> None:
    one.submit("r", [task("a"), task("b", "a"), task("c", "b")], now=0.0)
    assert routed_task_ids(one.dispatch(now=0.0)) == ["a"]
    outs = one.cancel("r", ["b"], now=1.0)
    (c,) = decisions_of(outs, CancelTask)
    assert (c.task_id, c.was_running, c.instance) == ("b", False, None)
    assert [k.task_id for k in decisions_of(outs, SkipTask)] == ["c"]
    outs = one.finish("r", "a", 1, Outcome.SUCCEEDED, now=2.0)
    assert decisions_of(outs, RunCompleted) == [RunCompleted(2.0, "r")]
    # A recorded terminal state is never overwritten: b is not released.
    assert state(one, "r", "b") is TaskState.CANCELLED
    assert one.tick(now=3.0) == []
    assert one.queued == 0
    assert one.runs["r"].open == 0


def test_cancel_whole_run_and_unknown_ids(one: Scheduler) -> None:
    one.submit("r", [task("a"), task("b"), task("c", "a")], now=0.0)
    one.dispatch(now=0.0)
    with pytest.raises(WorkflowError, match="run 'r' has no task 'zzz'"):
        one.cancel("r", ["b", "zzz"], now=0.5)
    assert state(one, "r", "b") is TaskState.READY  # validated before anything changed
    with pytest.raises(WorkflowError, match="unknown run 'x'"):
        one.cancel("x", None, now=0.5)
    outs = one.cancel("r", None, now=1.0)
    assert {c.task_id for c in decisions_of(outs, CancelTask)} == {"a", "b"}
    assert [k.task_id for k in decisions_of(outs, SkipTask)] == ["c"]
    assert decisions_of(outs, RunCompleted) == [RunCompleted(1.0, "r")]
    # Cancelling a finished run again changes nothing and completes nothing twice.
    assert one.cancel("r", None, now=2.0) == []
    assert one.tick(now=3.0) == []
    assert one.queued == 0


def test_cancelled_retry_is_not_routed_after_its_backoff(one: Scheduler) -> None:
    one.submit("r", [task("a")], now=0.0)
    one.dispatch(now=0.0)
    one.finish("r", "a", 1, Outcome.ERROR, now=1.0)
    one.cancel("r", ["a"], now=1.5)
    assert one.tick(now=100.0) == []
    assert state(one, "r", "a") is TaskState.CANCELLED


def test_attempt_reported_cancelled_by_the_runtime_does_not_leave_the_task_running(
    one: Scheduler,
) -> None:
    one.submit("r", [task("a"), task("b", "a")], now=0.0)
    one.dispatch(now=0.0)
    outs = one.finish("r", "a", 1, Outcome.CANCELLED, now=1.0)
    assert state(one, "r", "a") is TaskState.CANCELLED
    assert [k.task_id for k in decisions_of(outs, SkipTask)] == ["b"]
    assert decisions_of(outs, RunCompleted) == [RunCompleted(1.0, "r")]
    assert one.running == 0
    assert one.queued == 0
    # A cancellation is not the agent's failure.
    assert ("solo", "code") not in one.learning.arms


# --- resources and head-of-line ---------------------------------------------------------------


def test_exclusive_resources_never_overlap_and_are_all_or_nothing(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = make([make_spec("a", {"code": 0.8}, concurrency=8)])
    s.submit(
        "r",
        [
            task("t1", resources=("repo",)),
            task("t2", resources=("repo", "file")),
            task("t3", resources=("file",)),
            task("t4"),
        ],
        now=0.0,
    )
    assert routed_task_ids(s.dispatch(now=0.0)) == ["t1", "t3", "t4"]
    s.finish("r", "t1", 1, Outcome.SUCCEEDED, now=1.0)
    # t2 still lacks "file"; it must not sit on "repo" meanwhile.
    assert s.tick(now=1.0) == []
    s.submit("r2", [task("t5", resources=("repo",))], now=1.0)
    assert routed_task_ids(s.dispatch(now=1.0)) == ["t5"]
    s.finish("r", "t3", 1, Outcome.SUCCEEDED, now=2.0)
    assert s.tick(now=2.0) == []  # "repo" is held by t5
    s.finish("r2", "t5", 1, Outcome.SUCCEEDED, now=3.0)
    assert routed_task_ids(s.tick(now=3.0)) == ["t2"]


def test_a_busy_capability_does_not_block_another(make_spec: Callable[..., AgentSpec]) -> None:
    s = make([make_spec("slow", {"slow": 0.9}), make_spec("fast", {"fast": 0.9})])
    s.submit("r", [task(f"s{i}", capability="slow", priority=10) for i in range(5)], now=0.0)
    assert routed_task_ids(s.dispatch(now=0.0)) == ["s0"]
    s.submit("r2", [task("f", capability="fast")], now=1.0)
    assert routed_task_ids(s.dispatch(now=1.0)) == ["f"]


def test_a_resource_blocked_head_does_not_block_the_queue_behind_it(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = make([make_spec("a", {"code": 0.8}, concurrency=4)])
    s.submit("r", [task("holder", resources=("db",), priority=9)], now=0.0)
    s.dispatch(now=0.0)
    s.submit("r2", [task("waits", resources=("db",), priority=5), task("next")], now=1.0)
    assert routed_task_ids(s.dispatch(now=1.0)) == ["next"]
    assert state(s, "r2", "waits") is TaskState.READY
    s.finish("r", "holder", 1, Outcome.SUCCEEDED, now=2.0)
    assert routed_task_ids(s.tick(now=2.0)) == ["waits"]


def test_a_cancelled_attempt_keeps_its_resources_until_its_work_stopped(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = make([make_spec("a", {"code": 0.8}, concurrency=4)])
    s.submit("r", [task("holder", resources=("db",))], now=0.0)
    assert routed_task_ids(s.dispatch(now=0.0)) == ["holder"]
    s.submit("r2", [task("waits", resources=("db",))], now=0.5)
    s.cancel("r", ["holder"], now=1.0)
    # Cancelled, but its work may still be touching "db": nobody else takes it yet.
    assert state(s, "r", "holder") is TaskState.CANCELLED
    assert routed_task_ids(s.tick(now=1.0)) == []
    assert state(s, "r2", "waits") is TaskState.READY
    assert s.stopped("r", "holder", 2, now=1.5) == []  # not this attempt: nothing freed
    assert routed_task_ids(s.tick(now=1.5)) == []
    s.stopped("r", "holder", 1, now=2.0)
    assert routed_task_ids(s.tick(now=2.0)) == ["waits"]
    (att,) = s.task("r", "holder").attempts
    assert att.outcome is Outcome.CANCELLED


def test_many_tasks_waiting_on_one_resource_do_not_starve_the_rest(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = make([make_spec("a", {"code": 0.8}, concurrency=10)])
    repo = [task(f"r{i:03}", resources=("repo",), priority=1) for i in range(200)]
    s.submit("r", [*repo, task("free")], now=0.0)
    assert routed_task_ids(s.dispatch(now=0.0)) == ["r000", "free"]
    # The waiters take the resource one after another, in their order.
    now = 0.0
    for i in range(3):
        now += 1.0
        s.finish("r", f"r{i:03}", 1, Outcome.SUCCEEDED, now)
        assert routed_task_ids(s.tick(now)) == [f"r{i + 1:03}"]


# --- results and notices ----------------------------------------------------------------------


def test_results_are_timed_from_the_run_start(one: Scheduler) -> None:
    one.submit("r", [task("a"), task("b", "a")], now=100.0)
    one.dispatch(now=100.5)
    one.finish("r", "a", 1, Outcome.SUCCEEDED, now=103.5, output={"n": 1})
    one.tick(now=104.0)
    one.finish("r", "b", 1, Outcome.SUCCEEDED, now=106.0, output="done")
    a, b = one.results("r")
    assert (a.task_id, a.ready_at, a.finished_at, a.output) == ("a", 0.0, 3.5, {"n": 1})
    assert (a.attempts[0].started_at, a.attempts[0].finished_at) == (0.5, 3.5)
    assert a.attempts[0].duration_s == 3.0
    assert (b.ready_at, b.finished_at) == (3.5, 6.0)
    assert b.attempts[0].started_at == 4.0
    assert (a.agent, a.capability, a.error) == ("solo", "code", None)
    # The learned duration is the measured one.
    assert one.learning.duration("solo", "code") == 2.5  # mean of 3.0 and 2.0


def test_run_completed_is_emitted_once(one: Scheduler) -> None:
    outs: list[Output] = list(one.submit("r", [task("a"), task("b"), task("c", "a")], now=0.0))
    now = 0.0
    outs += one.dispatch(now)
    pending = decisions_of(outs, RouteTask)
    while pending:
        r = pending.pop(0)
        now += 1.0
        new = one.finish("r", r.task_id, r.attempt, Outcome.SUCCEEDED, now) + one.tick(now)
        outs += new
        pending += decisions_of(new, RouteTask)
    outs += one.cancel("r", None, now=now + 1)
    assert decisions_of(outs, RunCompleted) == [RunCompleted(3.0, "r")]
    assert len(decisions_of(outs, TaskCompleted)) == 3
    one.submit("open", [task("x")], now=10.0)
    with pytest.raises(WorkflowError, match="still has 1 open tasks"):
        one.forget("open")
    one.forget("r")
    assert "r" not in one.runs


# --- whole runs on virtual time ---------------------------------------------------------------


@dataclass
class Sim:
    """Drive a scheduler over virtual time, checking its invariants at every decision.

    At ``cancel_at`` the tasks ``cancel_ids`` are cancelled; attempts that were running then
    report later anyway, and those reports must be rejected; only then do they stop, and their
    slots and resources are free.
    """

    sched: Scheduler
    duration: Callable[[RouteTask], float]
    outcome: Callable[[RouteTask], Outcome]
    cancel_at: float | None = None
    cancel_ids: Sequence[str] = ()
    now: float = 0.0
    log: list[Output] = field(default_factory=list)
    _running: list[tuple[float, int, RouteTask]] = field(default_factory=list)
    _orphans: list[tuple[float, int, RouteTask]] = field(default_factory=list)
    _n: int = 0

    def apply(self, outs: Sequence[Output]) -> None:
        s = self.sched
        for o in outs:
            self.log.append(o)
            if isinstance(o, CancelTask) and o.was_running:
                (entry,) = [e for e in self._running if e[2].task_id == o.task_id]
                self._running.remove(entry)
                heapq.heapify(self._running)
                heapq.heappush(self._orphans, entry)
            if not isinstance(o, RouteTask):
                continue
            assert o.run_id is not None
            assert o.task_id is not None
            run = s.runs[o.run_id]
            rec = run.tasks[o.task_id]
            for dep in rec.task.depends_on:
                assert run.tasks[dep].state is TaskState.SUCCEEDED, (o.task_id, dep)
            assert s.running <= s.config.max_concurrency
            inst = s.agents[o.instance]
            assert 0 < inst.running <= inst.slots
            # Cancelled attempts still working (orphans) keep their resources too.
            for _, _, other in [*self._running, *self._orphans]:
                other_task = s.runs[other.run_id].tasks[other.task_id].task  # type: ignore[index]
                assert not set(other_task.resources) & set(rec.task.resources)
            self._n += 1
            heapq.heappush(self._running, (self.now + self.duration(o), self._n, o))

    def run(self) -> None:
        s = self.sched
        self.apply(s.dispatch(self.now))
        while True:
            heads = (
                self._running[0][0] if self._running else None,
                self._orphans[0][0] if self._orphans else None,
                s.next_wakeup(),
                self.cancel_at,
            )
            candidates = [t for t in heads if t is not None]
            if not candidates:
                return
            self.now = max(self.now, min(candidates))
            if self.cancel_at is not None and self.cancel_at <= self.now:
                self.cancel_at = None
                self.apply(s.cancel("r", self.cancel_ids, self.now))
            while self._orphans and self._orphans[0][0] <= self.now:
                _, _, r = heapq.heappop(self._orphans)
                stale = s.stale_results
                assert s.finish("r", r.task_id, r.attempt, Outcome.SUCCEEDED, self.now) == []  # type: ignore[arg-type]
                assert s.stale_results == stale + 1
                self.apply(s.stopped("r", r.task_id, r.attempt, self.now))  # type: ignore[arg-type]
            while self._running and self._running[0][0] <= self.now:
                _, _, r = heapq.heappop(self._running)
                assert r.run_id is not None
                assert r.task_id is not None
                outcome = self.outcome(r)
                self.apply(
                    s.finish(
                        r.run_id,
                        r.task_id,
                        r.attempt,
                        outcome,
                        self.now,
                        output=r.task_id,
                        error=None if outcome is Outcome.SUCCEEDED else "failed",
                    )
                )
            self.apply(s.tick(self.now))


Workload = tuple[list[AgentTask], set[str], int, list[tuple[str, int]], list[str], float | None]


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    n = draw(st.integers(min_value=1, max_value=25))
    tasks = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        tasks.append(
            task(
                f"t{i}",
                *(f"t{d}" for d in sorted(deps)),
                capability=draw(st.sampled_from(["code", "test"])),
                priority=draw(st.integers(0, 3)),
                complexity=draw(st.floats(0, 1)),
                max_attempts=draw(st.integers(1, 3)),
                resources=tuple(draw(st.sets(st.sampled_from(["r1", "r2", "r3"]), max_size=2))),
            )
        )
    broken = draw(st.sets(st.sampled_from([t.id for t in tasks]), max_size=4))
    cancelled = draw(st.lists(st.sampled_from([t.id for t in tasks]), max_size=3, unique=True))
    cancel_at = draw(st.none() | st.floats(0, 12).map(lambda t: round(t * 2) / 2))
    max_conc = draw(st.integers(1, 5))
    pool = draw(
        st.lists(
            st.tuples(st.sampled_from(["code", "test", "both"]), st.integers(1, 3)),
            min_size=1,
            max_size=4,
        )
    )
    return tasks, broken, max_conc, pool, cancelled, cancel_at


@settings(max_examples=100, deadline=None)
@given(workloads())
def test_any_workload_runs_to_a_consistent_end(w: Workload) -> None:
    tasks, broken, max_conc, pool, cancelled, cancel_at = w
    specs = []
    for i, (kind, conc) in enumerate(pool):
        caps = {"code": 0.5 + i / 10, "test": 0.9 - i / 10} if kind == "both" else {kind: 0.7}
        specs.append(AgentSpec(f"s{i}", caps, NOOP, concurrency=conc))
    specs.append(AgentSpec("fallback", {"code": 0.1, "test": 0.1}, NOOP))
    s = make(specs, max_concurrency=max_conc)
    s.submit("r", tasks, now=0.0)
    sim = Sim(
        s,
        duration=lambda r: 1.0 + int(r.task_id[1:]) % 3,
        outcome=lambda r: Outcome.ERROR if r.task_id in broken else Outcome.SUCCEEDED,
        cancel_at=cancel_at,
        cancel_ids=cancelled if cancel_at is not None else (),
    )
    sim.run()

    assert decisions_of(sim.log, RunCompleted) == [RunCompleted(s.runs["r"].finished_at, "r")]  # type: ignore[arg-type]
    assert s.running == 0
    assert s.queued == 0
    assert all(i.running == 0 for i in s.agents.values())
    res = {r.task_id: r for r in s.results("r")}
    by_id = {t.id: t for t in tasks}
    for tid, r in res.items():
        task = by_id[tid]
        if r.state is TaskState.SUCCEEDED:
            assert all(res[d].state is TaskState.SUCCEEDED for d in task.depends_on)
            assert r.output == tid
            assert tid not in broken
            assert all(
                res[d].finished_at <= r.attempts[-1].started_at  # type: ignore[operator]
                for d in task.depends_on
            )
        elif r.state is TaskState.FAILED:
            assert tid in broken
            assert len(r.attempts) == task.max_attempts
            assert all(a.outcome is Outcome.ERROR for a in r.attempts)
        elif r.state is TaskState.CANCELLED:
            assert tid in sim.cancel_ids
        else:
            assert r.state is TaskState.SKIPPED
            assert any(res[d].state is not TaskState.SUCCEEDED for d in task.depends_on)
            assert r.attempts == []
        if tid in broken and r.state is not TaskState.CANCELLED and r.attempts:
            assert r.state is TaskState.FAILED
    # Each task reached its terminal state once, by exactly one notice or decision.
    terminal_notices = [
        o.task_id for o in sim.log if isinstance(o, (TaskCompleted, FailTask, SkipTask, CancelTask))
    ]
    assert sorted(terminal_notices) == sorted(res)
