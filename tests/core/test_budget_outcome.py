"""The scheduler's side of budgets: an attempt refused for a spent budget ends its task failed
at once (no retry however many attempts remain), dependents skipped, and is not held against
the agent (no learning failure, no breaker count). Pure, on virtual time."""

from __future__ import annotations

from metaagent import AgentTask, FailTask, Outcome, RetryTask, RouteTask, SkipTask, TaskState
from metaagent.testing import agent_spec, decisions_of, make_scheduler


def test_a_budget_refusal_fails_the_task_for_good_and_skips_its_dependents() -> None:
    s = make_scheduler(agent_spec("w", {"x": 0.9}))
    tasks = [AgentTask("a", "x", max_attempts=5), AgentTask("b", "x", depends_on=("a",))]
    (route,) = decisions_of(s.submit("r", tasks, 0.0) + s.tick(0.0), RouteTask)
    out = s.finish("r", "a", route.attempt, Outcome.BUDGET_EXCEEDED, 1.0,
                   error="budget_exceeded: the run budget of usd 1 (spent 1) is spent")  # fmt: skip
    assert decisions_of(out, RetryTask) == []
    (fail,) = decisions_of(out, FailTask)
    assert fail.task_id == "a"
    assert [d.task_id for d in decisions_of(out, SkipTask)] == ["b"]
    states = s.task_states("r")
    assert states == {"a": TaskState.FAILED, "b": TaskState.SKIPPED}
    result = s.results("r")[0]
    assert result.error == "budget_exceeded: the run budget of usd 1 (spent 1) is spent"
    assert [a.outcome for a in result.attempts] == [Outcome.BUDGET_EXCEEDED]
    assert s.learning.arms.get(("w", "x")) is None  # not the agent's failure
    assert all(inst.state.value == "ready" for inst in s.agents.values())  # no breaker trip
