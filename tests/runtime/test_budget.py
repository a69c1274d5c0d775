"""Budgets end to end: LLM agents against the loopback OpenAI-compatible server of the LLM
runner's tests (each answer reports 11 input and 7 output tokens, 18 in all), priced by the
shipped table or a workflow's override, runs journaled to a real SQLite file."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from metaagent.agents.pricing import default_pricing, pricing_date
from metaagent.core.budget import Budget, BudgetPlan, Ledger, Price, Spend, price_usage
from metaagent.core.retry import RetryPolicy
from metaagent.core.tasks import Outcome, TaskState, Usage
from metaagent.errors import RunFailed
from metaagent.journal.sqlite import SqliteJournal
from metaagent.runtime.orchestrator import Orchestrator
from metaagent.workflow.build import parse_workflow
from metaagent.workflow.settings import orchestrator_config, with_budget
from tests.agents.test_llm_runner import FakeApi, Reply, Request, openai_reply

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.report.batch import BatchResult
    from metaagent.runtime.config import OrchestratorConfig
    from metaagent.workflow.build import Workflow

pytestmark = pytest.mark.timeout(60)

CALL = 18  # tokens of one answer


def workflow(url: str, tasks: list[dict[str, object]], **extra: object) -> Workflow:
    settings = extra.pop("settings", {})
    agents = extra.pop("agents", None) or [
        {
            "name": "writer",
            "capabilities": {"write": 1.0},
            "concurrency": 2,
            "runner": {"type": "llm", "provider": "openai", "model": "gpt-4o-mini",
                       "base_url": url + "/v1"},
        }
    ]  # fmt: skip
    assert not extra
    return parse_workflow({"name": "b", "settings": settings, "agents": agents, "tasks": tasks})


def config(wf: Workflow, tmp: Path, concurrency: int = 1) -> OrchestratorConfig:
    cfg = orchestrator_config(wf.settings, workdir=tmp, task_count=len(wf.tasks))
    cfg = replace(cfg, max_concurrency=concurrency, retry=RetryPolicy(base_s=0.001, jitter=0.0))
    return with_budget(cfg, wf)


async def run(wf: Workflow, tmp: Path, concurrency: int = 1) -> BatchResult:
    async with Orchestrator(wf.agents, config(wf, tmp, concurrency)) as orch:
        return await orch.execute_batch(wf.tasks, name=wf.name)


def states(batch: BatchResult) -> dict[str, TaskState]:
    return {r.task_id: r.state for r in batch.results}


def answer(req: Request) -> Reply:
    return openai_reply("text")


def t(tid: str, **more: object) -> dict[str, object]:
    return {"id": tid, "capability": "write", "prompt": tid, **more}


# --- the pure parts ---------------------------------------------------------------------------


def test_a_budget_is_spent_when_its_cap_is_reached() -> None:
    assert Budget(usd=1.0).spent_by(Spend(0.99, 10**9)) is None
    assert Budget(usd=1.0).spent_by(Spend(1.0, 0)) == "usd 1 (spent 1)"
    assert Budget(tokens=10).spent_by(Spend(0.0, 10)) == "tokens 10 (spent 10)"
    assert Budget().spent_by(Spend(5.0, 5)) is None


def test_ledger_names_the_first_spent_budget_run_then_task_then_agent() -> None:
    ledger = Ledger()
    plan = BudgetPlan(Budget(tokens=100), {"a": Budget(tokens=10)}, {"w": Budget(usd=0.5)})
    assert ledger.refusal(plan, "a", "w") is None
    ledger.charge("a", "w", Usage(6, 4, 0.1))
    assert ledger.refusal(plan, "a", "w") == (
        "budget_exceeded: the task 'a' budget of tokens 10 (spent 10) is spent"
    )
    assert ledger.refusal(plan, "b", "w") is None
    ledger.charge("b", "w", Usage(1, 1, 0.4))
    assert ledger.refusal(plan, "c", "w") == (
        "budget_exceeded: the agent 'w' budget of usd 0.5 (spent 0.5) is spent"
    )
    assert ledger.refusal(plan, "c", "other") is None
    ledger.charge("c", "other", Usage(50, 38))
    assert ledger.refusal(plan, "c", "other") == (
        "budget_exceeded: the run budget of tokens 100 (spent 100) is spent"
    )
    assert (ledger.run.tokens, ledger.agents["w"].tokens, ledger.tasks["c"].usd) == (100, 12, 0)


def test_usage_is_priced_by_its_own_cost_else_its_tokens() -> None:
    price = Price(input_per_mtok_usd=2.0, output_per_mtok_usd=10.0)
    assert price_usage(Usage(1_000_000, 100_000, None), price) == pytest.approx(3.0)
    assert price_usage(Usage(1_000_000, 100_000, 0.25), price) == 0.25  # the agent's own
    assert price_usage(Usage(10, 10, None), None) is None  # no price: unknown
    assert price_usage(Usage(None, None, None), price) is None


def test_the_shipped_price_table_is_dated_and_parsed() -> None:
    table = default_pricing()
    assert datetime.date.fromisoformat(pricing_date()).year >= 2025
    assert table["gpt-4o-mini"] == Price(0.15, 0.60)
    assert all(p.input_per_mtok_usd >= 0 and p.output_per_mtok_usd >= 0 for p in table.values())


# --- enforcement ------------------------------------------------------------------------------


async def test_a_spent_run_budget_fails_the_rest_while_running_attempts_finish(
    tmp_path: Path,
) -> None:
    async with FakeApi(answer) as server:
        first = {"priority": 5}  # a and b go first
        tasks = [t("a", **first), t("b", **first), t("c"), t("d"), t("e", depends_on=["c"])]
        # One answer's tokens pass the budget: the two attempts started together both finish.
        wf = workflow(server.url, tasks, settings={"budget": {"tokens": 10}})
        batch = await run(wf, tmp_path, concurrency=2)
    assert states(batch) == {
        "a": TaskState.SUCCEEDED,
        "b": TaskState.SUCCEEDED,
        "c": TaskState.FAILED,
        "d": TaskState.FAILED,
        "e": TaskState.SKIPPED,
    }
    assert len(server.requests) == 2  # no request for c and d
    by_id = {r.task_id: r for r in batch.results}
    for tid in "cd":
        r = by_id[tid]
        assert r.error == "budget_exceeded: the run budget of tokens 10 (spent 36) is spent"
        (only,) = r.attempts  # failed for good, not retried
        assert only.outcome is Outcome.BUDGET_EXCEEDED
        assert only.usage is None
    report = batch.to_json()
    assert report["spend"] == {
        "usd": pytest.approx(2 * (11 * 0.15 + 7 * 0.60) / 1e6),  # the shipped gpt-4o-mini price
        "tokens": 2 * CALL,
        "by_agent": {"writer": {"usd": pytest.approx(2 * 5.85e-6), "tokens": 36}},
    }
    tasks_json = {x["id"]: x for x in report["tasks"]}  # type: ignore[attr-defined]
    assert tasks_json["a"]["spend"] == {"usd": pytest.approx(5.85e-6), "tokens": CALL}
    assert tasks_json["c"]["spend"] == {"usd": 0.0, "tokens": 0}
    assert report["cost_usd"] == pytest.approx(2 * 5.85e-6, abs=1e-6)  # rounded to 6 places


async def test_a_task_budget_stops_its_retries_other_tasks_go_on(tmp_path: Path) -> None:
    fail = {"argv": ["python3", "-c", "import sys; sys.exit(1)"]}
    async with FakeApi(answer) as server:
        tasks = [t("x", verify=fail, max_attempts=3, budget={"tokens": CALL}), t("y")]
        batch = await run(workflow(server.url, tasks), tmp_path)
    by_id = {r.task_id: r for r in batch.results}
    assert by_id["y"].state is TaskState.SUCCEEDED
    x = by_id["x"]
    assert x.state is TaskState.FAILED
    assert [a.outcome for a in x.attempts] == [Outcome.VERIFY_FAILED, Outcome.BUDGET_EXCEEDED]
    assert x.error == "budget_exceeded: the task 'x' budget of tokens 18 (spent 18) is spent"
    assert len(server.requests) == 2  # x once, y once


async def test_an_agent_budget_with_a_pricing_override(tmp_path: Path) -> None:
    # 11 tokens at $10/M and 7 at $100/M: $0.00081 a call; the budget allows two calls.
    async with FakeApi(answer) as server:
        llm = {"type": "llm", "provider": "openai", "base_url": server.url + "/v1"}
        agents = [
            {"name": "pricey", "capabilities": {"write": 1.0}, "budget": {"usd": 0.0015},
             "runner": {**llm, "model": "house-model"}},
            {"name": "other", "capabilities": {"read": 1.0},
             "runner": {**llm, "model": "unpriced-model"}},
        ]  # fmt: skip
        tasks: list[dict[str, object]] = [t("a"), t("b"), t("c"), t("r", capability="read")]
        pricing = {"house-model": {"input_per_mtok_usd": 10, "output_per_mtok_usd": 100}}
        wf = workflow(server.url, tasks, agents=agents, settings={"pricing": pricing})
        batch = await run(wf, tmp_path)
    by_id = {r.task_id: r for r in batch.results}
    assert [by_id[x].state for x in "abcr"] == [TaskState.SUCCEEDED] * 2 + [
        TaskState.FAILED,
        TaskState.SUCCEEDED,
    ]
    assert by_id["a"].attempts[0].usage == Usage(11, 7, pytest.approx(0.00081))  # type: ignore[arg-type]
    assert by_id["r"].attempts[0].usage == Usage(11, 7, None)  # no price known: no cost
    assert by_id["c"].error is not None
    assert by_id["c"].error.startswith("budget_exceeded: the agent 'pricey' budget of usd 0.0015")
    by_agent = batch.to_json()["spend"]["by_agent"]  # type: ignore[index]
    assert by_agent == {
        "pricey": {"usd": pytest.approx(0.00162), "tokens": 36},
        "other": {"usd": 0.0, "tokens": CALL},
    }


# --- resume -----------------------------------------------------------------------------------


async def test_spend_survives_a_resume(tmp_path: Path) -> None:
    """a and b spend 36 tokens; c hangs and the orchestrator stops. Resumed, c runs again
    (36 < 37) and d, counted against all 54 spent, does not start."""
    hang = {"on": True}

    def handler(req: Request) -> Reply:
        if req.user.startswith("c") and hang["on"]:
            return Reply(hang=True)
        return openai_reply("text")

    db = tmp_path / "j.db"
    async with FakeApi(handler) as server:
        tasks = [t("a"), t("b"), t("c"), t("d")]
        wf = workflow(server.url, tasks, settings={"budget": {"tokens": 2 * CALL + 1}})
        journal = SqliteJournal(db)
        orch = Orchestrator(wf.agents, config(wf, tmp_path), journal=journal)
        handle = await orch.submit(wf.tasks, name=wf.name)
        await asyncio.wait_for(server.hanging.wait(), 30)
        await orch.aclose()
        with pytest.raises(RunFailed):
            await handle.result()
        journal.close()
        hang["on"] = False
        journal = SqliteJournal(db)
        try:
            async with Orchestrator(wf.agents, config(wf, tmp_path), journal=journal) as again:
                batch = await (await again.resume(handle.run_id)).result()
        finally:
            journal.close()
    assert states(batch) == {
        "a": TaskState.SUCCEEDED,
        "b": TaskState.SUCCEEDED,
        "c": TaskState.SUCCEEDED,
        "d": TaskState.FAILED,
    }
    d = next(r for r in batch.results if r.task_id == "d")
    assert d.error == "budget_exceeded: the run budget of tokens 37 (spent 54) is spent"
    assert batch.to_json()["spend"]["tokens"] == 3 * CALL  # type: ignore[index]
