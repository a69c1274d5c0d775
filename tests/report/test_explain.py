"""The decision trail of a task, read back from a real SQLite journal of a real run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    AttemptContext,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    RetryPolicy,
    RoutingWeights,
)
from metaagent.journal.sqlite import SqliteJournal
from metaagent.report.explain import explain_route, explain_task

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.journal.base import StoredRun

W = RoutingWeights().signed()  # costs count against the score


def ok(ctx: AttemptContext) -> str:
    return ctx.task.id


def fails_first(ctx: AttemptContext) -> str:
    if ctx.attempt == 1:
        raise RuntimeError("flaky on the first try")
    return "ok"


async def journaled_run(path: Path, agents: list[AgentSpec], tasks: list[AgentTask]) -> StoredRun:
    journal = SqliteJournal(path)
    config = OrchestratorConfig(retry=RetryPolicy(base_s=0.001, max_s=0.01, jitter=0.0))
    try:
        async with Orchestrator(agents, config, journal=journal) as orch:
            handle = await orch.submit(tasks, run_id="run-1")
            await handle.result()
        return journal.load_run("run-1")
    finally:
        journal.close()


@pytest.fixture
async def stored(tmp_path: Path) -> StoredRun:
    agents = [
        AgentSpec("strong", {"code": 0.9}, FunctionRunner(ok)),
        AgentSpec("weak", {"code": 0.5, "docs": 0.9}, FunctionRunner(ok)),
    ]
    tasks = [
        AgentTask("a", "code"),
        AgentTask("b", "code", depends_on=("a",)),
        AgentTask("c", "docs", complexity=0.9),
    ]
    return await journaled_run(tmp_path / "j.db", agents, tasks)


def test_the_winner_and_its_margin_over_the_runner_up(stored: StoredRun) -> None:
    trail = explain_task(stored, "a")
    assert (trail.task_id, trail.capability, trail.state, trail.agent) == (
        "a", "code", "succeeded", "strong",
    )  # fmt: skip
    routes = [s for s in trail.steps if s.type == "route_task"]
    assert len(routes) == 1
    why = routes[0].route
    assert why is not None
    assert (why.instance, why.runner_up) == ("strong", "weak")
    assert [c.agent for c in why.candidates] == ["strong", "weak"]
    # Nothing learned yet: 1 s per unit of complexity, success the prior from the declared
    # proficiency, (1 + 2p) / 4; the cost is run / success.
    assert why.candidates[0].breakdown == {
        "wait": 0.0, "run": 1.0, "retry": 0.4286, "scarcity": 0.0, "penalty": 0.0,
        "success": 0.7, "cost": 0.0,
    }  # fmt: skip
    assert why.candidates[1].breakdown["success"] == 0.5
    # weak is the only docs agent and task "c" (docs) waits: taking weak for code costs the
    # docs work its duration times the share of the time ahead it needs of weak (1 s of docs
    # on weak's slot against 2.5 s of work, a, c and half of b, over 2 slots: 0.8), on top of
    # its longer expected retry time.
    assert why.candidates[1].breakdown["scarcity"] == 0.8
    assert why.margin == pytest.approx(0.8 + 1 / 0.5 - 1 / 0.7, abs=1e-3)
    assert [c.part for c in why.contributions[:2]] == ["scarcity", "retry"]
    assert sum(c.delta for c in why.contributions) == pytest.approx(why.margin, abs=1e-3)
    assert why.summary.startswith("strong won with -1.429 over weak (-2.800), by 1.371")
    assert "scarcity (+0.800" in why.summary
    assert not why.affinity
    assert trail.weights == W
    assert trail.weights_note is None
    assert trail.attempts[0]["outcome"] == "succeeded"


def test_every_candidate_score_is_its_weighted_parts(stored: StoredRun) -> None:
    for tid in ("a", "b", "c"):
        for step in explain_task(stored, tid).steps:
            if step.route is not None:
                for c in step.route.candidates:
                    assert sum(c.weighted.values()) == pytest.approx(c.score, abs=2e-3)


def test_a_lone_candidate_is_said_to_be_alone(stored: StoredRun) -> None:
    trail = explain_task(stored, "c")
    route = next(s.route for s in trail.steps if s.route is not None)
    assert route.runner_up is None
    assert route.margin is None
    assert "only free candidate" in route.summary


def test_trail_as_json(stored: StoredRun) -> None:
    data = explain_task(stored, "b").to_json()
    again = json.loads(json.dumps(data))
    assert again["task_id"] == "b"
    assert again["decisions"][-1]["type"] == "route_task"
    assert {"candidates", "margin", "contributions", "summary"} <= set(
        again["decisions"][-1]["route"]
    )


def test_unknown_task(stored: StoredRun) -> None:
    with pytest.raises(KeyError):
        explain_task(stored, "nope")


async def test_a_retry_and_the_reroute_that_avoided_the_failed_agent(tmp_path: Path) -> None:
    agents = [
        AgentSpec("flaky", {"code": 0.9}, FunctionRunner(fails_first)),
        AgentSpec("steady", {"code": 0.5}, FunctionRunner(ok)),
    ]
    stored = await journaled_run(tmp_path / "j.db", agents, [AgentTask("x", "code")])
    trail = explain_task(stored, "x")
    assert [s.type for s in trail.steps] == ["route_task", "retry_task", "route_task"]
    first, retry, second = trail.steps
    assert first.agent == "flaky"
    assert "flaky on the first try" in retry.reason
    assert second.agent == "steady"
    assert "not back on flaky, which failed it" in second.reason
    assert [a["outcome"] for a in trail.attempts] == ["error", "succeeded"]
    assert trail.state == "succeeded"


async def test_the_ready_order_decision_names_the_task_place(tmp_path: Path) -> None:
    agents = [AgentSpec("solo", {"code": 0.9}, FunctionRunner(ok))]
    # Submitted short-first; the critical path puts the long chain's head first.
    tasks = [AgentTask("short", "code"), AgentTask("head", "code"), AgentTask("tail", "code",
             depends_on=("head",))]  # fmt: skip
    stored = await journaled_run(tmp_path / "j.db", agents, tasks)
    steps = explain_task(stored, "head").steps
    order = [s for s in steps if s.type == "optimize_workflow"]
    assert len(order) == 1
    assert order[0].detail is not None
    assert order[0].detail.startswith("placed 1 of 2 in the ready order")


# --- pure: literal decisions ----------------------------------------------------------------------


def _cand(agent: str, wait: float, run: float, success: float) -> dict[str, object]:
    retry = run * (1 - success) / success
    parts = {"wait": wait, "run": run, "retry": retry, "scarcity": 0.0, "penalty": 0.0,
             "success": success}  # fmt: skip
    return {"agent": agent, "score": round(sum(W[k] * v for k, v in parts.items()), 4),
            "breakdown": parts}  # fmt: skip


def _route(winner: dict[str, object], *others: dict[str, object], reason: str = "best"
           ) -> dict[str, object]:  # fmt: skip
    return {
        "type": "route_task", "at": 1.0, "task_id": "t", "agent": "spec", "attempt": 1,
        "instance": winner["agent"], "score": winner["score"], "reason": reason,
        "breakdown": winner["breakdown"], "candidates": [winner, *others],
    }  # fmt: skip


def test_a_wait_advantage_shows_as_a_share_and_a_loss_as_despite() -> None:
    win = _cand("x#1", 0.0, 10.0, 0.8)  # free now, a little slower
    lose = _cand("x#2", 4.0, 8.0, 0.8)  # faster, but busy for 4 s
    why = explain_route(_route(win, lose), W)
    assert why.margin == pytest.approx(14.0 - 12.5, abs=1e-3)
    assert why.contributions[0].part == "wait"
    assert why.contributions[-1].part == "run"
    assert "mostly wait (+4.000" in why.summary
    assert "despite" in why.summary
    assert "run (-2.000" in why.summary


def test_affinity_explains_a_winner_that_scored_less() -> None:
    best = _cand("x#1", 0.0, 10.0, 0.8)
    kept = _cand("x#2", 0.0, 10.2, 0.8)
    d = _route(kept, best, reason="affinity: x#2 handled earlier tasks of group 'g'")
    d["candidates"] = [best]  # the runners-up are those of the best, as the router records them
    why = explain_route(d, W)
    assert why.affinity
    assert why.runner_up == "x#1"
    assert why.margin == pytest.approx(-0.25, abs=1e-3)
    assert "chosen for group affinity" in why.summary


def test_a_tie_is_called_a_tie() -> None:
    a, b = _cand("x#1", 0.0, 10.0, 0.7), _cand("x#2", 0.0, 10.0, 0.7)
    assert "tied with x#2" in explain_route(_route(a, b), W).summary


def test_other_weights_are_flagged(stored: StoredRun) -> None:
    trail = explain_task(stored, "a", weights=RoutingWeights(retry=3.0))
    assert trail.weights_note is not None
    assert "other weights" in trail.weights_note
