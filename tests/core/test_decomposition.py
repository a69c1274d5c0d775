"""Decomposition: templates and planner agents expand a task into a validated sub-graph."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    FailTask,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryPolicy,
    RunFailed,
    Scheduler,
    SchedulerConfig,
    TaskState,
)
from metaagent.core.decisions import DecomposeTask, Output, RouteTask, RunCompleted, TaskCompleted
from metaagent.core.planner import InvalidPlan, expand, parse_plan
from metaagent.core.tasks import Decompose
from metaagent.testing import decisions_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from metaagent.agents.base import AttemptContext

NO_JITTER = RetryPolicy(base_s=1.0, max_s=30.0, jitter=0.0)
FEATURE = (
    AgentTask("design", "arch"),
    AgentTask("backend", "code", depends_on=("design",)),
    AgentTask("frontend", "ui", depends_on=("design",)),
    AgentTask("tests", "test", depends_on=("backend", "frontend")),
)


def sched(make_spec: Callable[..., AgentSpec]) -> Scheduler:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER))
    s.add_agent(
        make_spec("all", {"arch": 0.9, "code": 0.9, "ui": 0.8, "test": 0.7}, concurrency=8), 0.0
    )
    s.add_agent(make_spec("planner", {"plan": 1.0}), 0.0)
    return s


def run_all(
    s: Scheduler, run: str, now: float, outputs: dict[str, object] | None = None
) -> list[Output]:
    """Finish every routed attempt (with ``outputs`` for named tasks) until nothing is routed."""
    seen: list[Output] = []
    routes = s.dispatch(now)
    while routes:
        for d in routes:
            now += 1.0
            out = (outputs or {}).get(d.task_id or "", f"did {d.task_id}")
            seen.extend(
                s.finish(run, d.task_id or "", d.attempt, Outcome.SUCCEEDED, now, output=out)
            )
        routes = s.tick(now)
        seen.extend(routes)
        routes = [r for r in routes if isinstance(r, RouteTask)]
    return seen


def test_template_expands_when_ready_and_parent_aggregates(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = sched(make_spec)
    parent = AgentTask("login", "feature", decompose=Decompose(template=FEATURE))
    after = AgentTask("docs", "code", depends_on=("login",))
    outs = s.submit("r", [parent, after], 0.0)
    (dec,) = decisions_of(outs, DecomposeTask)
    assert dec.subtasks == ("login/design", "login/backend", "login/frontend", "login/tests")
    assert dec.source == "template"
    # The parent is never routed itself; its sub-tasks are, in dependency order.
    seen = run_all(s, "r", 0.0)
    routed = [d.task_id for d in decisions_of(seen, RouteTask)]
    assert "login" not in routed
    assert s.task("r", "login").state is TaskState.SUCCEEDED
    assert s.task("r", "login").output == {
        "login/design": "did login/design",
        "login/backend": "did login/backend",
        "login/frontend": "did login/frontend",
        "login/tests": "did login/tests",
    }
    assert s.task("r", "docs").state is TaskState.SUCCEEDED
    rec = s.task("r", "login/tests")
    assert rec.task.metadata["parent"] == "login"
    assert len(decisions_of(seen, RunCompleted)) == 1


def test_subtasks_inherit_priority_and_resources(make_spec: Callable[..., AgentSpec]) -> None:
    parent = AgentTask("p", "x", priority=7, resources=("repo",))
    subs = expand(parent, [{"id": "a", "capability": "code", "priority": 1}], ["code"])
    assert subs[0].id == "p/a"
    assert subs[0].priority == 7
    assert subs[0].resources == ("repo",)


def test_a_failed_subtask_fails_the_parent_and_skips_its_dependents(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = sched(make_spec)
    parent = AgentTask("login", "feature", decompose=Decompose(template=FEATURE))
    s.submit("r", [parent, AgentTask("docs", "code", depends_on=("login",))], 0.0)
    (design,) = s.dispatch(0.0)
    outs = s.finish("r", "login/design", design.attempt, Outcome.ERROR, 1.0, error="boom")
    # Retried three times, then it fails: the rest of the sub-graph is skipped, then the parent.
    for k in range(2):
        outs = s.tick(100.0 * (k + 1))
        (again,) = decisions_of(outs, RouteTask)
        outs = s.finish("r", "login/design", again.attempt, Outcome.ERROR, 100.0 * (k + 1) + 1)
    fails = [f.task_id for f in decisions_of(outs, FailTask)]
    assert fails == ["login/design", "login"]
    assert s.task("r", "login").error == "sub-task 'login/design' did not succeed"
    assert s.task("r", "login/tests").state is TaskState.SKIPPED
    assert s.task("r", "docs").state is TaskState.SKIPPED
    assert len(decisions_of(outs, RunCompleted)) == 1


def test_planner_output_is_validated_and_retried_with_feedback(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = sched(make_spec)
    s.submit("r", [AgentTask("plan", "plan", decompose=Decompose(planner=True))], 0.0)
    (first,) = s.dispatch(0.0)
    # A cyclic plan is rejected: the attempt fails and the problems are kept as feedback.
    cyclic = {"tasks": [
        {"id": "a", "capability": "code", "depends_on": ["b"]},
        {"id": "b", "capability": "code", "depends_on": ["a"]},
    ]}  # fmt: skip
    outs = s.finish("r", "plan", first.attempt, Outcome.SUCCEEDED, 1.0, output=cyclic)
    assert not decisions_of(outs, DecomposeTask)
    rec = s.task("r", "plan")
    assert rec.attempts[-1].outcome is Outcome.ERROR
    assert "dependency cycle: " in (rec.attempts[-1].error or "")
    assert any("cycle" in p for p in rec.feedback)
    # An unknown capability and a bad field are both reported, in one go.
    (second,) = decisions_of(s.tick(10.0), RouteTask)
    bad = json.dumps(
        {
            "tasks": [
                {"id": "a", "capability": "cooking"},
                {"id": "b", "capability": "code", "colour": 1},
            ]
        }
    )
    s.finish("r", "plan", second.attempt, Outcome.SUCCEEDED, 11.0, output=bad)
    problems = s.task("r", "plan").feedback
    assert any("unknown capability 'cooking'" in p for p in problems)
    assert any("unknown field(s) colour" in p for p in problems)
    # A valid plan expands the task; the planner's attempt counts as a success.
    (third,) = decisions_of(s.tick(100.0), RouteTask)
    good = {
        "tasks": [
            {"id": "a", "capability": "code"},
            {"id": "b", "capability": "test", "depends_on": ["a"]},
        ]
    }
    outs = s.finish("r", "plan", third.attempt, Outcome.SUCCEEDED, 101.0, output=good)
    (dec,) = decisions_of(outs, DecomposeTask)
    assert dec.subtasks == ("plan/a", "plan/b")
    assert s.task("r", "plan").feedback == ()
    seen = run_all(s, "r", 101.0)
    assert s.task("r", "plan").state is TaskState.SUCCEEDED
    assert decisions_of(seen, TaskCompleted)[-1].task_id == "plan"


def test_planner_that_never_plans_validly_fails_with_the_errors(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = sched(make_spec)
    s.submit(
        "r", [AgentTask("plan", "plan", max_attempts=2, decompose=Decompose(planner=True))], 0.0
    )
    (a,) = s.dispatch(0.0)
    s.finish("r", "plan", a.attempt, Outcome.SUCCEEDED, 1.0, output="not json at all")
    (b,) = decisions_of(s.tick(50.0), RouteTask)
    outs = s.finish("r", "plan", b.attempt, Outcome.SUCCEEDED, 51.0, output={"tasks": []})
    (fail,) = decisions_of(outs, FailTask)
    rec = s.task("r", "plan")
    assert rec.state is TaskState.FAILED
    assert [att.outcome for att in rec.attempts] == [Outcome.ERROR, Outcome.ERROR]
    assert "output is not JSON" in (rec.attempts[0].error or "")
    assert "at least one sub-task" in (rec.attempts[1].error or "")
    assert "all 2 attempts failed" in fail.reason


def test_parse_plan_accepts_text_dicts_and_lists() -> None:
    assert parse_plan('[{"id": "a", "capability": "c"}]') == [{"id": "a", "capability": "c"}]
    assert parse_plan({"tasks": [{"id": "a", "capability": "c"}]}) == [
        {"id": "a", "capability": "c"}
    ]
    with pytest.raises(InvalidPlan, match="must be a mapping"):
        parse_plan([1, 2])


def test_cancelling_a_decomposed_task_cancels_its_open_subtasks(
    make_spec: Callable[..., AgentSpec],
) -> None:
    s = sched(make_spec)
    s.submit("r", [AgentTask("login", "feature", decompose=Decompose(template=FEATURE))], 0.0)
    (design,) = s.dispatch(0.0)
    outs = s.cancel("r", ["login"], 1.0)
    assert s.task("r", "login").state is TaskState.CANCELLED
    for sub in ("login/design", "login/backend", "login/frontend", "login/tests"):
        assert s.task("r", sub).state in (TaskState.CANCELLED, TaskState.SKIPPED)
    assert len(decisions_of(outs, RunCompleted)) == 1
    # The running sub-task's late result is rejected.
    assert s.finish("r", "login/design", design.attempt, Outcome.SUCCEEDED, 2.0) == []


async def test_orchestrator_runs_a_planner_agent_end_to_end() -> None:
    calls: list[tuple[str, tuple[str, ...]]] = []

    async def planner(ctx: AttemptContext) -> object:
        calls.append((ctx.task.id, ctx.feedback))
        if ctx.attempt == 1:
            return {"tasks": [{"id": "x", "capability": "nope"}]}
        return {
            "tasks": [
                {"id": "x", "capability": "code"},
                {"id": "y", "capability": "code", "depends_on": ["x"]},
            ]
        }

    async def coder(ctx: AttemptContext) -> object:
        return f"{ctx.task.id} after {sorted(ctx.upstream)}"

    agents = [
        AgentSpec("planner", {"plan": 1.0}, FunctionRunner(planner)),
        AgentSpec("coder", {"code": 0.9}, FunctionRunner(coder), concurrency=2),
    ]
    config = OrchestratorConfig(retry=RetryPolicy(base_s=0.001, max_s=0.001, jitter=0.0))
    async with Orchestrator(agents, config) as orch:
        batch = await orch.execute_batch(
            [AgentTask("p", "plan", decompose=Decompose(planner=True))]
        )
    assert batch.ok
    assert calls[0] == ("p", ())
    assert "unknown capability 'nope'" in calls[1][1][0]
    assert batch.result("p").output == {"p/x": "p/x after []", "p/y": "p/y after ['p/x']"}
    assert [d.type for d in batch.decisions].count("decompose_task") == 1


async def test_a_decomposed_run_resumes_from_the_journal(tmp_path: object) -> None:
    from pathlib import Path

    from metaagent.journal import SqliteJournal

    db = Path(str(tmp_path)) / "j.db"
    ran: list[str] = []
    hold = asyncio.Event()
    stuck = asyncio.Event()

    async def work(ctx: AttemptContext) -> str:
        ran.append(ctx.task.id)
        if ctx.task.id == "login/tests" and not hold.is_set():
            stuck.set()
            await asyncio.Event().wait()  # stuck until the orchestrator goes away
        return f"did {ctx.task.id}"

    agents = [
        AgentSpec(
            "all",
            {"arch": 0.9, "code": 0.9, "ui": 0.9, "test": 0.9},
            FunctionRunner(work),
            concurrency=4,
        )
    ]
    tasks = [
        AgentTask("login", "feature", decompose=Decompose(template=FEATURE)),
        AgentTask("docs", "code", depends_on=("login",)),
    ]
    journal = SqliteJournal(db)
    orch = Orchestrator(agents, journal=journal)
    handle = await orch.submit(tasks, name="feature")
    await asyncio.wait_for(stuck.wait(), 10)
    await orch.aclose()  # the process "stops": the stuck attempt is left open in the journal
    journal.close()
    with pytest.raises(RunFailed, match="closed before"):
        await handle.result()

    hold.set()
    ran.clear()
    journal = SqliteJournal(db)
    async with Orchestrator(agents, journal=journal) as orch2:
        resumed = await orch2.resume(handle.run_id)
        batch = await resumed.result()
    journal.close()
    assert batch.ok
    # Finished sub-tasks were kept; only the interrupted one and what follows it ran again.
    assert ran == ["login/tests", "docs"]
    assert batch.result("login").output == {
        "login/design": "did login/design",
        "login/backend": "did login/backend",
        "login/frontend": "did login/frontend",
        "login/tests": "did login/tests",
    }
    attempts = batch.result("login/tests").attempts
    assert [a.outcome for a in attempts] == [Outcome.LOST, Outcome.SUCCEEDED]
