"""Cost-aware routing end to end: two LLM agents against the loopback OpenAI-compatible server
of the LLM runner's tests (each answer reports 11 input and 7 output tokens), priced by the
workflow's table, routed by ``cheapest_meeting``, journaled to a real SQLite file; the mean cost
learned from the attempts' usage overrides the declared one and is there again for the next
orchestrator on the same journal (as learned durations are)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from metaagent.core.retry import RetryPolicy
from metaagent.core.tasks import TaskState
from metaagent.journal.sqlite import SqliteJournal
from metaagent.report.explain import explain_route
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.workflow.build import parse_workflow
from metaagent.workflow.settings import orchestrator_config, with_budget
from tests.agents.test_llm_runner import FakeApi, Reply, Request, openai_reply

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.runtime.config import OrchestratorConfig
    from metaagent.workflow.build import Workflow

pytestmark = pytest.mark.timeout(60)

# USD per million tokens: an answer of 18 tokens costs $0.018 on cheap-m and $0.45 on strong-m
PRICES = {"cheap-m": 1000, "strong-m": 25_000}


def workflow(url: str) -> Workflow:
    agents = [
        {
            "name": name,
            "capabilities": {"write": 0.99},
            # strong declares less than it will cost; cheap declares about its price
            "cost_per_call_usd": declared,
            "runner": {"type": "llm", "provider": "openai", "model": model,
                       "base_url": url + "/v1"},
        }
        for name, model, declared in (("strong", "strong-m", 0.001), ("cheap", "cheap-m", 0.02))
    ]  # fmt: skip
    tasks = [
        {"id": "a", "capability": "write", "prompt": "a", "complexity": 0.1},
        {"id": "b", "capability": "write", "prompt": "b", "complexity": 0.1,
         "depends_on": ["a"]},
    ]  # fmt: skip
    settings = {
        "routing": {"objective": "cheapest_meeting", "quality_target": 0.5},
        "pricing": {m: {"input_per_mtok_usd": p, "output_per_mtok_usd": p}
                    for m, p in PRICES.items()},
    }  # fmt: skip
    return parse_workflow({"name": "c", "settings": settings, "agents": agents, "tasks": tasks})


def config(wf: Workflow, tmp: Path) -> OrchestratorConfig:
    cfg = orchestrator_config(wf.settings, workdir=tmp, task_count=len(wf.tasks))
    cfg = replace(cfg, max_concurrency=1, retry=RetryPolicy(base_s=0.001, jitter=0.0))
    return with_budget(cfg, wf)


def answer(req: Request) -> Reply:
    return openai_reply("text")


async def test_learned_cost_routes_the_next_task_and_survives_the_orchestrator(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    async with FakeApi(answer) as server:
        wf = workflow(server.url)
        journal = SqliteJournal(db)
        try:
            async with Orchestrator(wf.agents, config(wf, tmp_path), journal=journal) as orch:
                batch = await orch.execute_batch(wf.tasks, name=wf.name)
                learned = orch.scheduler.learning.cost("strong", "write")
        finally:
            journal.close()
        assert {r.task_id: r.state for r in batch.results} == {
            "a": TaskState.SUCCEEDED, "b": TaskState.SUCCEEDED,
        }  # fmt: skip
        # a: strong's declared $0.001 was the cheapest; its attempt reported $0.45, so b went
        # to cheap, whose declared $0.02 is now below strong's learned price.
        spent = {r.task_id: r.attempts[-1] for r in batch.results}
        assert (spent["a"].agent, spent["b"].agent) == ("strong", "cheap")
        assert spent["a"].usage is not None
        assert spent["a"].usage.cost_usd == pytest.approx(0.45)
        assert learned == pytest.approx(0.45)

        journal = SqliteJournal(db)
        try:
            stats = {(s, c): arm for s, c, arm in journal.load_stats()}
            assert (stats[("strong", "write")].costs, stats[("cheap", "write")].costs) == (1, 1)
            assert stats[("cheap", "write")].mean_cost_usd == pytest.approx(0.018)
            stored = journal.load_run(batch.run_id)
            routes = [d for d in stored.decisions if d.get("type") == "route_task"]
            async with Orchestrator(wf.agents, config(wf, tmp_path), journal=journal) as again:
                restored = again.scheduler.learning
                assert restored.cost("strong", "write") == pytest.approx(0.45)
                assert restored.cost("cheap", "write") == pytest.approx(0.018)
        finally:
            journal.close()
    # The journaled decisions say what chose: the objective, and every candidate's price.
    assert [str(d["reason"]).split(":")[0] for d in routes] == [
        "cheapest meeting success 0.5 for 'write' at complexity 0.1"
    ] * 2
    b = routes[1]
    prices = {c["agent"].split("#")[0]: c["breakdown"]["cost"] for c in b["candidates"]}  # type: ignore[union-attr, index]
    assert prices == {"cheap": 0.02, "strong": 0.45}
    why = explain_route(b, {})
    assert why.summary.startswith("cheap")
    assert "cheapest candidate reaching the success target: $0.02 per attempt" in why.summary
