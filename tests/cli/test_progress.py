"""The live progress view: counts from events, busy agents, and why work waits."""

from __future__ import annotations

from rich.console import Console

from metaagent import AgentSpec, FunctionRunner
from metaagent.cli.progress import ProgressView
from metaagent.runtime.events import Event


def render(view: ProgressView) -> str:
    console = Console(record=True, width=120)
    console.print(view.render(1.5))
    return console.export_text()


def test_counts_and_busy_agents_follow_the_events() -> None:
    agents = [AgentSpec("a", {"x": 1.0}, FunctionRunner(lambda c: None), concurrency=2)]
    view = ProgressView(3, agents)
    view.on_event(Event("task", 0.1, "r", "t1", "running", "a"))
    view.on_event(Event("task", 0.2, "r", "t2", "running", "a"))
    text = render(view)
    assert "0/3 done" in text
    assert "running 2" in text
    assert "slots in use 2/2" in text
    view.on_event(Event("task", 0.3, "r", "t1", "succeeded", "a"))
    view.on_event(Event("task", 0.4, "r", "t2", "retrying", "a", "boom"))
    assert view.counts()["succeeded"] == 1
    assert view.counts()["ready"] == 1
    assert view.busy["a"] == 0
    assert view.line(Event("task", 0.4, "r", "t2", "failed", None, "all 3 attempts failed")) == (
        "[   0.40s] t2 failed: all 3 attempts failed"
    )


def test_waiting_reasons_are_shown() -> None:
    view = ProgressView(1, [])
    view.waiting = {"gpu": "4 tasks wait: no live agent offers 'gpu' (lost)"}
    assert "4 tasks wait: no live agent offers 'gpu' (lost)" in render(view)
