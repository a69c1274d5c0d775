"""The spend table of ``metaagent run``'s summary: tokens and cost per agent and per task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from metaagent.core.budget import spend_by_agent, spend_of

if TYPE_CHECKING:
    from metaagent.report.batch import BatchResult

__all__ = ["spend_table"]


def spend_table(batch: BatchResult) -> Table | None:
    """Per agent, then per task that spent anything, then the run; None when nothing was."""
    agents = spend_by_agent(batch.results)
    if not agents:
        return None
    table = Table(title="spend", title_justify="left")
    for col in ("by", "name", "tokens", "cost usd"):
        table.add_column(col, no_wrap=True)
    for name, s in agents.items():
        table.add_row("agent", name, f"{s.tokens:,}", f"{s.usd:.4f}")
    for r in batch.results:
        s = spend_of(r.attempts)
        if s.tokens or s.usd:
            table.add_row("task", r.task_id, f"{s.tokens:,}", f"{s.usd:.4f}")
    total = spend_of(a for r in batch.results for a in r.attempts)
    table.add_row("run", batch.run_id or batch.name, f"{total.tokens:,}", f"{total.usd:.4f}")
    return table
