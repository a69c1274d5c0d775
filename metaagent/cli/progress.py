"""Live progress of a run for the terminal, built from the run's event stream."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from metaagent.report.batch import total_cost_usd

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.specs import AgentSpec
    from metaagent.report.batch import BatchResult
    from metaagent.runtime.events import Event

_STATES = ("pending", "ready", "running", "succeeded", "failed", "skipped", "cancelled")
_COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "cancelled": "magenta",
    "running": "cyan",
    "retrying": "yellow",
}


class ProgressView:
    """Counts tasks by state and agents by busy slots, from events alone."""

    def __init__(self, total: int, agents: Sequence[AgentSpec]) -> None:
        self.total = total
        self.elapsed = 0.0
        self.state: dict[str, str] = {}
        self.slots = {a.name: a.concurrency for a in agents}
        self.busy: dict[str, int] = dict.fromkeys(self.slots, 0)
        self.running: dict[str, str] = {}  # task -> agent
        self.waiting: dict[str, str] = {}  # capability -> why its tasks are not being served

    def on_event(self, ev: Event) -> None:
        self.elapsed = max(self.elapsed, ev.at)
        if ev.kind != "task" or ev.task_id is None or ev.state is None:
            return
        tid = ev.task_id
        agent = self.running.pop(tid, None)
        if agent is not None:
            self.busy[agent] -= 1
        if ev.state == "running" and ev.agent is not None:
            self.running[tid] = ev.agent
            self.busy[ev.agent] = self.busy.get(ev.agent, 0) + 1
        self.state[tid] = "ready" if ev.state == "retrying" else ev.state

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_STATES, 0)
        for s in self.state.values():
            counts[s] = counts.get(s, 0) + 1
        counts["pending"] = self.total - sum(counts.values())
        return counts

    def line(self, ev: Event) -> str | None:
        """A plain log line for a terminal task event (for output that is not a terminal)."""
        if ev.kind != "task" or ev.state in (None, "running"):
            return None
        who = f" on {ev.agent}" if ev.agent else ""
        why = f": {ev.detail}" if ev.detail and ev.state != "succeeded" else ""
        return f"[{ev.at:7.2f}s] {ev.task_id} {ev.state}{who}{why}"

    def render(self, now_s: float) -> Table:
        counts = self.counts()
        done = sum(counts[s] for s in ("succeeded", "failed", "skipped", "cancelled"))
        table = Table.grid(padding=(0, 2))
        table.add_row(
            Text(f"{done}/{self.total} done", style="bold"),
            Text(f"elapsed {now_s:6.1f}s"),
            Text(
                "  ".join(f"{s} {counts[s]}" for s in _STATES if counts[s] or s == "running"),
            ),
        )
        busy = sum(1 for n in self.busy.values() if n > 0)
        idle = len(self.slots) - busy
        table.add_row(
            Text(f"agents busy {busy}, idle {idle}"),
            Text(f"slots in use {sum(self.busy.values())}/{sum(self.slots.values())}"),
            Text(
                ", ".join(f"{t}@{a}" for t, a in list(self.running.items())[:6])
                + (" ..." if len(self.running) > 6 else ""),
                style="cyan",
            ),
        )
        for why in self.waiting.values():
            table.add_row(Text(why, style="yellow"), Text(""), Text(""))
        return table


def summary_table(batch: BatchResult, width: int = 100) -> Table:
    """The final table: one row per task, then the run's figures in the caption.

    ``width`` is the console's: the detail column gets what the others leave of it.
    """
    table = Table(title=f"{batch.name}: {_verdict(batch)}", title_justify="left")
    rows = []
    for r in batch.results:
        dur = r.attempts[-1].duration_s if r.attempts else 0.0
        rows.append(
            (
                r.task_id,
                r.state.value,
                (r.attempts[-1].agent_instance if r.attempts else "-"),
                str(len(r.attempts)),
                f"{dur:.2f}",
                r.error if r.error else _excerpt(r.output),
            )
        )
    heads = ("task", "state", "agent", "tries", "time s")
    widths = [max([len(h)] + [len(row[k]) for row in rows]) for k, h in enumerate(heads)]
    widths[0] = min(widths[0], 28)
    widths[2] = min(widths[2], 24)
    for head, w in zip(heads, widths, strict=True):
        table.add_column(head, no_wrap=True, overflow="ellipsis", min_width=w, max_width=w)
    spare = width - sum(widths) - 3 * len(heads) - 4
    table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=max(8, spare))
    for row in rows:
        table.add_row(
            row[0], Text(row[1], style=_COLOURS.get(row[1], "")), row[2], row[3], row[4], row[5]
        )
    table.caption = (
        f"makespan {batch.makespan_s:.2f}s, work {batch.total_run_s:.2f}s, "
        f"speed-up {batch.speedup:.2f}x, peak parallelism {batch.peak_parallelism}, "
        f"utilisation {batch.utilisation:.0%}, dispatches/task {batch.dispatches_per_task:.2f}"
        + _spend(batch)
    )
    return table


def _spend(batch: BatchResult) -> str:
    """The tokens and cost the attempts reported (coding and LLM agents), or nothing."""
    used = [a.usage for r in batch.results for a in r.attempts if a.usage is not None]
    if not used:
        return ""
    tokens = sum((u.input_tokens or 0) + (u.output_tokens or 0) for u in used)
    return f", {tokens:,} tokens, cost ${total_cost_usd(batch.results):.4f}"


def agents_table(batch: BatchResult) -> Table:
    """Per agent instance: busy and offered slot-seconds and utilisation, and the node it ran
    on when the backend placed it on a cluster."""
    table = Table(title="agents", title_justify="left")
    cols = ["instance", "slots", "busy s", "offered s", "utilisation"]
    for col in cols + (["node"] if batch.nodes else []):
        table.add_column(col, no_wrap=True)
    for inst, fig in batch.agents.items():
        row = [
            inst,
            str(int(fig.get("slots", 0))),
            f"{fig.get('busy_s', 0.0):.2f}",
            f"{fig.get('available_s', 0.0):.2f}",
            f"{fig.get('utilisation', 0.0):.0%}",
        ]
        table.add_row(*row, *([batch.nodes.get(inst, "-")] if batch.nodes else []))
    return table


def _verdict(batch: BatchResult) -> str:
    parts = [f"{n} {s}" for s, n in batch.counts.items() if n]
    return ", ".join(parts) or "no tasks"


def _excerpt(output: object, limit: int = 80) -> str:
    if output is None:
        return ""
    if isinstance(output, dict):
        for key in ("summary", "headline", "message", "result"):
            if isinstance(output.get(key), str):
                output = output[key]
                break
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
