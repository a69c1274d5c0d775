"""The workflow's budget and pricing fields: what loads, and the errors that name the place."""

from __future__ import annotations

import pytest

from metaagent.core.budget import Budget, Price
from metaagent.errors import WorkflowError
from metaagent.workflow.build import Workflow, parse_workflow


def load(**parts: object) -> Workflow:
    agent = {
        "name": "a",
        "capabilities": {"x": 1.0},
        "runner": {"type": "function", "function": "json:dumps"},
    }
    agent.update(parts.pop("agent", {}))  # type: ignore[call-overload]
    task = {"id": "t", "capability": "x", **parts.pop("task", {})}  # type: ignore[dict-item]
    return parse_workflow({"name": "w", "agents": [agent], "tasks": [task], **parts})


def test_budgets_of_the_run_a_task_and_an_agent_and_a_price_override_load() -> None:
    wf = load(
        settings={
            "budget": {"usd": 2.5, "tokens": 100_000},
            "pricing": {
                "gpt-4o-mini": {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2},
                "mine": {"input_per_mtok_usd": 0, "output_per_mtok_usd": 0.5},
            },
        },
        task={"budget": {"tokens": 500}},
        agent={"budget": {"usd": 0.1}},
    )
    assert wf.budget.run == Budget(2.5, 100_000)
    assert wf.budget.tasks == {"t": Budget(None, 500)}
    assert wf.budget.agents == {"a": Budget(0.1, None)}
    assert wf.pricing is not None
    assert wf.pricing["gpt-4o-mini"] == Price(1.0, 2.0)  # overridden
    assert wf.pricing["mine"] == Price(0.0, 0.5)  # added
    assert wf.pricing["gpt-4o"] == Price(2.5, 10.0)  # shipped, kept


def test_no_budget_is_an_empty_plan() -> None:
    assert load().budget.empty


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (
            {"settings": {"budget": {}}},
            "settings.budget: Value error, a budget needs usd",
        ),
        ({"settings": {"budget": {"usd": 0}}}, "settings.budget.usd"),
        ({"settings": {"budget": {"usd": "lots"}}}, "settings.budget.usd"),
        ({"settings": {"budget": {"dollars": 1}}}, "settings.budget.dollars"),
        ({"task": {"budget": {"tokens": 0}}}, "tasks[0] (id 't').budget.tokens"),
        ({"agent": {"budget": {"tokens": 1.5}}}, "agents[0] (name 'a').budget.tokens"),
        ({"settings": {"pricing": {"m": {"input_per_mtok_usd": 1}}}}, "output_per_mtok_usd"),
        (
            {"settings": {"pricing": {"m": {"input_per_mtok_usd": -1, "output_per_mtok_usd": 1}}}},
            "settings.pricing.m.input_per_mtok_usd",
        ),
    ],
)
def test_bad_budgets_and_prices_are_named(parts: dict[str, object], message: str) -> None:
    with pytest.raises(WorkflowError) as err:
        load(**parts)
    assert message in str(err.value)


def test_a_budget_on_a_template_step_is_refused_naming_the_step() -> None:
    with pytest.raises(WorkflowError, match=r"templates\.plan\[0\] \(id 's'\)"):
        load(
            templates={"plan": [{"id": "s", "capability": "x", "budget": {"usd": 1}}]},
            task={"decompose": {"template": "plan"}},
        )
