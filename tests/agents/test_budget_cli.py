"""``metaagent run`` with budgets, the fake coding tools on PATH: Claude Code reports its own
cost, Codex only tokens (priced by the workflow's ``pricing``); the run's budget is spent by an
overrunning attempt, the tasks after it fail ``budget_exceeded`` and their dependents are
skipped; the summary and the JSON report show the spend per task, agent and run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from coding_support import cli, report, tasks_of

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)

WORKFLOW = """
name: spend
settings:
  max_concurrency: 1
  budget: {usd: 10}
  pricing: {house-model: {input_per_mtok_usd: 1, output_per_mtok_usd: 1}}
agents:
  - {name: claude, capabilities: {code: 1.0}, runner: {type: coding, tool: claude}}
  - {name: codex, capabilities: {review: 1.0},
     runner: {type: coding, tool: codex, model: house-model}}
tasks:
  - {id: r, capability: review, prompt: "@write r.txt=1", priority: 9}
  - {id: a, capability: code, prompt: "@overrun", priority: 5}
  - {id: b, capability: code, prompt: "@write b.txt=1"}
  - {id: c, capability: code, prompt: "@write c.txt=1", depends_on: [b]}
"""


def test_a_spent_run_budget_in_the_summary_and_the_report(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    done = cli("run", "wf.yaml", "--json", "out.json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    rep = report(tmp_path / "out.json")
    tasks = tasks_of(rep)
    assert {t: tasks[t]["state"] for t in "rabc"} == {
        "r": "succeeded",
        "a": "succeeded",  # ran while the budget had room: it finishes, overrun and all
        "b": "failed",
        "c": "skipped",
    }
    error = tasks["b"]["error"]
    assert isinstance(error, str)
    assert error.startswith("budget_exceeded: the run budget of usd 10 (spent 45.0")
    (refused,) = tasks["b"]["attempts"]  # type: ignore[misc]
    assert refused["outcome"] == "budget_exceeded"
    r_usage = tasks["r"]["attempts"][0]["usage"]  # type: ignore[index]
    r_tokens = r_usage["input_tokens"] + r_usage["output_tokens"]
    assert r_usage["cost_usd"] == pytest.approx(r_tokens / 1e6)  # codex's tokens, priced
    spend = rep["spend"]
    assert isinstance(spend, dict)
    assert spend["by_agent"] == {
        "codex": {"usd": pytest.approx(r_tokens / 1e6), "tokens": r_tokens},
        "claude": {"usd": pytest.approx(45.0), "tokens": 7_000_000},
    }
    assert spend["usd"] == pytest.approx(45.0 + r_tokens / 1e6)
    assert spend["tokens"] == 7_000_000 + r_tokens
    assert tasks["a"]["spend"] == {"usd": pytest.approx(45.0), "tokens": 7_000_000}
    assert tasks["b"]["spend"] == {"usd": 0.0, "tokens": 0}
    out = " ".join(done.stdout.split())
    assert "budget_exceeded" in out
    spend_rows = [[c.strip() for c in line.split("│")[1:-1]] for line in done.stdout.splitlines()]
    assert ["agent", "claude", "7,000,000", "45.0000"] in spend_rows  # the spend table
    assert ["task", "a", "7,000,000", "45.0000"] in spend_rows
    assert ["run", rep["run_id"], f"{7_000_000 + r_tokens:,}", f"{45 + r_tokens / 1e6:.4f}"] in (
        spend_rows
    )
