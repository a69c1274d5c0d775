"""The runtime's side of budgets (``metaagent.core.budget``): each attempt's usage is priced
when it ends and charged to its run's ledger, and an attempt about to start is refused once a
budget it falls under is spent.

A run's ledger is built from its records the first time one of its attempts is about to start,
so a resumed run counts what its earlier attempts spent (their usage is in the journal; a run
with budgets is restored eagerly for this, see ``Orchestrator.resume``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from metaagent.agents.pricing import default_pricing
from metaagent.core.budget import Ledger, price_usage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.core.budget import BudgetPlan, Price
    from metaagent.core.scheduler.records import RunRecord
    from metaagent.core.scheduler.scheduler import Scheduler
    from metaagent.core.tasks import Usage

__all__ = ["BudgetGuard"]


class BudgetGuard:
    """Prices usage by model and keeps every run's ledger against ``plan``."""

    __slots__ = ("_ledgers", "_models", "_scheduler", "plan", "pricing")

    def __init__(
        self, scheduler: Scheduler, plan: BudgetPlan, pricing: Mapping[str, Price] | None
    ) -> None:
        self._scheduler = scheduler
        self.plan = plan
        self.pricing = default_pricing() if pricing is None else dict(pricing)
        self._ledgers: dict[str, Ledger] = {}
        self._models: dict[str, str | None] = {}  # spec name -> the model its runner calls

    def priced(self, usage: Usage, spec: str) -> Usage:
        """``usage`` with its cost: the agent's own figure, else its tokens at the model's price
        (unchanged when the model has no price)."""
        if usage.cost_usd is not None:
            return usage
        price = self.pricing.get(self._model(spec) or "")
        cost = price_usage(usage, price)
        return usage if cost is None else replace(usage, cost_usd=round(cost, 9))

    def charge(self, run_id: str, task_id: str, spec: str, usage: Usage) -> None:
        """Count an ended attempt's usage (a run not checked yet is counted from its records)."""
        ledger = self._ledgers.get(run_id)
        if ledger is not None:
            ledger.charge(task_id, spec, usage)

    def refusal(self, run_id: str, task_id: str, spec: str) -> str | None:
        """Why the attempt of ``task_id`` on ``spec`` may not start, or None."""
        if self.plan.empty:
            return None
        ledger = self._ledgers.get(run_id)
        if ledger is None:
            runs = self._scheduler.runs
            for gone in [r for r in self._ledgers if r not in runs]:  # forgotten runs
                del self._ledgers[gone]
            ledger = self._ledgers[run_id] = _ledger_of(runs[run_id])
        return ledger.refusal(self.plan, task_id, spec)

    def _model(self, spec: str) -> str | None:
        if spec not in self._models:
            found = self._scheduler.pool.specs.get(spec)
            model = None if found is None else found.spec.runner.describe().get("model")
            self._models[spec] = model if isinstance(model, str) else None
        return self._models[spec]


def _ledger_of(run: RunRecord) -> Ledger:
    ledger = Ledger()
    for rec in run.tasks.values():
        for a in rec.attempts:
            if a.usage is not None:
                ledger.charge(rec.task.id, a.agent, a.usage)
    return ledger
