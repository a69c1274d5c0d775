"""A workflow's budgets and prices (``settings: {budget, pricing}``, ``budget:`` on tasks and
agents) as the runtime takes them: a ``BudgetPlan`` and a price table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.agents.pricing import merged_pricing
from metaagent.core.budget import Budget, BudgetPlan, Price
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from metaagent.workflow.schema import BudgetModel, WorkflowModel

__all__ = ["budget_plan", "workflow_pricing"]


def budget_plan(model: WorkflowModel, source: str) -> BudgetPlan:
    """The run's, tasks' and agents' budgets. A template step may not carry one (its sub-tasks'
    ids are made when it expands): ``WorkflowError`` naming the step."""
    for name, steps in model.templates.items():
        for i, step in enumerate(steps):
            if step.budget is not None:
                raise WorkflowError(
                    "budget: not supported on a template step (give the parent task a budget, "
                    "or the agents)",
                    where=f"{source}: templates.{name}[{i}] (id {step.id!r})",
                )
    return BudgetPlan(
        run=_budget(model.settings.budget),
        tasks={t.id: b for t in model.tasks if (b := _budget(t.budget)) is not None},
        agents={a.name: b for a in model.agents if (b := _budget(a.budget)) is not None},
    )


def workflow_pricing(model: WorkflowModel) -> dict[str, Price]:
    """The shipped price table with the workflow's ``settings.pricing`` over it."""
    return merged_pricing(
        {
            name: Price(p.input_per_mtok_usd, p.output_per_mtok_usd)
            for name, p in model.settings.pricing.items()
        }
    )


def _budget(m: BudgetModel | None) -> Budget | None:
    return None if m is None else Budget(m.usd, m.tokens)
