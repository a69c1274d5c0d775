"""Budgets and spend: what a run, a task and an agent may spend, and what they did. Pure.

A ``Budget`` caps money (``usd``) and tokens (input plus output); either may be left out. A
``BudgetPlan`` holds the run's budget and those of named tasks and agents. The ``Ledger`` adds up
the usage attempts reported, per run, per task and per agent (spec); ``refusal`` says whether a
new attempt may start: once a budget it falls under is spent (its spend has reached the cap), no
attempt starts under it and the answer names ``budget_exceeded`` and which budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from metaagent.core.tasks import Attempt, TaskResult, Usage

__all__ = [
    "BUDGET_EXCEEDED",
    "Budget",
    "BudgetPlan",
    "Ledger",
    "Price",
    "Spend",
    "price_usage",
    "spend_by_agent",
    "spend_of",
]

BUDGET_EXCEEDED = "budget_exceeded"


@dataclass(frozen=True, slots=True)
class Budget:
    """A cap on spend: ``usd`` (money), ``tokens`` (input plus output); ``None``: no cap."""

    usd: float | None = None
    tokens: int | None = None

    def spent_by(self, spend: Spend) -> str | None:
        """What of this budget ``spend`` has used up (``"usd 0.50"``), or None."""
        if self.usd is not None and spend.usd >= self.usd:
            return f"usd {self.usd:g} (spent {spend.usd:.6g})"
        if self.tokens is not None and spend.tokens >= self.tokens:
            return f"tokens {self.tokens} (spent {spend.tokens})"
        return None


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """The budgets of one workflow: the run's, and those of tasks and agents by name."""

    run: Budget | None = None
    tasks: Mapping[str, Budget] = field(default_factory=dict)
    agents: Mapping[str, Budget] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.run is None and not self.tasks and not self.agents


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in US dollars per million tokens."""

    input_per_mtok_usd: float
    output_per_mtok_usd: float

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_per_mtok_usd + output_tokens * self.output_per_mtok_usd
        ) / 1e6


def price_usage(usage: Usage, price: Price | None) -> float | None:
    """The cost of ``usage``: its own ``cost_usd`` when the agent reported one, else its tokens
    at ``price`` (None when there is neither)."""
    if usage.cost_usd is not None:
        return usage.cost_usd
    if price is None or (usage.input_tokens is None and usage.output_tokens is None):
        return None
    return price.cost_usd(usage.input_tokens or 0, usage.output_tokens or 0)


@dataclass(slots=True)
class Spend:
    """Money and tokens spent (``usd`` counts only the attempts whose cost is known)."""

    usd: float = 0.0
    tokens: int = 0

    def add(self, usage: Usage) -> None:
        if usage.cost_usd is not None:
            self.usd += usage.cost_usd
        self.tokens += (usage.input_tokens or 0) + (usage.output_tokens or 0)

    def to_json(self) -> dict[str, object]:
        return {"usd": round(self.usd, 9), "tokens": self.tokens}


def spend_of(attempts: Iterable[Attempt]) -> Spend:
    """What these attempts spent, by their usage."""
    out = Spend()
    for a in attempts:
        if a.usage is not None:
            out.add(a.usage)
    return out


def spend_by_agent(results: Iterable[TaskResult]) -> dict[str, Spend]:
    """What each agent (spec) spent over these tasks' attempts, agents in order of first use."""
    out: dict[str, Spend] = {}
    for r in results:
        for a in r.attempts:
            if a.usage is not None:
                out.setdefault(a.agent, Spend()).add(a.usage)
    return out


@dataclass(slots=True)
class Ledger:
    """One run's spend, in total, per task and per agent (spec)."""

    run: Spend = field(default_factory=Spend)
    tasks: dict[str, Spend] = field(default_factory=dict)
    agents: dict[str, Spend] = field(default_factory=dict)

    def charge(self, task_id: str, agent: str, usage: Usage) -> None:
        self.run.add(usage)
        self.tasks.setdefault(task_id, Spend()).add(usage)
        self.agents.setdefault(agent, Spend()).add(usage)

    def refusal(self, plan: BudgetPlan, task_id: str, agent: str) -> str | None:
        """Why an attempt of ``task_id`` on ``agent`` may not start (a spent budget), or None."""
        checks: list[tuple[str, Budget | None, Spend | None]] = [
            ("run", plan.run, self.run),
            (f"task {task_id!r}", plan.tasks.get(task_id), self.tasks.get(task_id)),
            (f"agent {agent!r}", plan.agents.get(agent), self.agents.get(agent)),
        ]
        for name, budget, spend in checks:
            if budget is None:
                continue
            spent = budget.spent_by(spend or Spend())
            if spent is not None:
                return f"{BUDGET_EXCEEDED}: the {name} budget of {spent} is spent"
        return None
