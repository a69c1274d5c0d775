"""The dashboard on what is hard for it, in a real Chromium against a real ``metaagent serve``:
a 10,000-task run (collapsed by level, a virtual table, a task's drawer), a server killed with
SIGKILL and started again mid-run (the page reconnects with its last ``seq`` and misses
nothing), and the run model's handling of the event schema (docs/service.md), run in the page.
Skipped when chromium is not installed."""

from __future__ import annotations

import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

import pytest
from server_helpers import TOKEN, Server, start_server

from bench.dashboard import chromium_path, journal_run

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Browser, Page

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed"),
    pytest.mark.timeout(240),
]

HOLD = """import pathlib, sys, time
hold = pathlib.Path(sys.argv[1]) / ("hold-" + sys.argv[2])
deadline = time.monotonic() + 120
while hold.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print("done " + sys.argv[2])
"""


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for the checks that only need the dashboard's modules."""
    server = start_server(tmp_path_factory.mktemp("idle"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def open_view(page: Page, server: Server, query: str) -> None:
    page.goto(f"{server.url}/#token={TOKEN}")
    page.wait_for_selector("body[data-ready=true] #runs")
    page.evaluate("q => history.pushState(null, '', '/?' + q)", query)
    page.evaluate("dispatchEvent(new PopStateEvent('popstate'))")
    page.wait_for_selector("body[data-ready=true]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_10000_task_run_collapses_by_level_and_stays_usable(tmp_path: Path, page: Page) -> None:
    server = start_server(tmp_path)
    try:
        run_id = journal_run(tmp_path / "journal.db", 10_000, width=100)
        open_view(page, server, f"view=run&run={run_id}")
        page.wait_for_selector("#dag svg.collapsed")
        groups = page.locator("#dag .dag-group")
        assert 0 < groups.count() <= 160
        counted = page.evaluate(
            "[...document.querySelectorAll('#dag .dag-group')]"
            ".reduce((n, g) => n + Number(g.dataset.count), 0)"
        )
        assert counted == 10_000  # every task is in one group
        assert page.locator("#tasks .table-summary").inner_text() == "10000 of 10000 tasks"
        assert page.locator("#tasks .tspacer .trow").count() < 80
        page.locator("#tasks .tviewport").evaluate("v => { v.scrollTop = 28 * 9000; }")
        page.wait_for_selector('#tasks [data-task-id="t9000"]')
        assert page.locator("#tasks .tspacer .trow").count() < 80
        assert page.locator("#gantt canvas").get_attribute("data-bars") == "10000"
        page.locator('#tasks [data-task-id="t9000"]').click()
        page.wait_for_selector("#drawer .why-agent")
        assert page.locator("#drawer .why-agent").first.inner_text() == "agent-0"
        page.keyboard.press("Escape")
        page.wait_for_selector("#drawer", state="hidden")
        page.locator("#dag .dag-group .group-box").last.click()
        assert page.locator("#dag .dag-square").count() > 0
    finally:
        server.stop()


def test_the_page_reconnects_after_the_server_is_killed_and_misses_nothing(
    tmp_path: Path, page: Page
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    (tmp_path / "hold.py").write_text(HOLD)
    argv = [sys.executable, str(tmp_path / "hold.py"), str(gates), "{task_id}"]
    doc: dict[str, Any] = {
        "name": "survives",
        "agents": [{"name": "holder", "capabilities": {"work": 0.9}, "concurrency": 2,
                    "runner": {"type": "command", "argv": argv}}],
        "tasks": [{"id": "first", "capability": "work"},
                  {"id": "second", "capability": "work", "depends_on": ["first"]},
                  {"id": "third", "capability": "work", "depends_on": ["second"]}],
    }  # fmt: skip
    (gates / "hold-second").write_text("")
    port = free_port()
    server = start_server(tmp_path, port=port)
    try:
        with server.client() as c:
            run_id = c.post("/v1/runs", json={"workflow": doc}).json()["run_id"]
        open_view(page, server, f"view=run&run={run_id}")
        page.wait_for_selector('#dag [data-task-id="second"][data-state="running"]')
        page.wait_for_selector("#live.on")
        server.stop(signal.SIGKILL)
        page.wait_for_selector("#live:has-text('reconnecting')")
        (gates / "hold-second").unlink()  # the restarted server runs it again, at once
        server = start_server(tmp_path, port=port)
        page.wait_for_selector("#live.on", timeout=30_000)
        page.wait_for_selector(
            '#dag [data-task-id="third"][data-state="succeeded"]', timeout=60_000
        )
        page.wait_for_selector(".run-title .badge:has-text('succeeded')")
        assert (
            page.locator('#dag [data-task-id="second"]').get_attribute("data-state") == "succeeded"
        )
        assert page.evaluate("location.search").startswith("?view=run")  # never reloaded
    finally:
        server.stop()


MODEL_CHECK = """async () => {
  const { RunModel } = await import('/js/model.js');
  const m = new RunModel({ run_id: 'r', name: 'n', state: 'running', tasks: [
    { id: 'a', capability: 'c', state: 'pending', attempts: [], depends_on: [] },
    { id: 'b', capability: 'c', state: 'pending', attempts: [], depends_on: ['a'] },
    { id: 'c', capability: 'c', state: 'pending', attempts: [], depends_on: ['a', 'b'] },
  ], decisions: [] });
  const out = { levels: m.tasks.map((t) => t.level) };
  const route = { type: 'route_task', task_id: 'a', agent: 'spec', instance: 'spec-2',
    attempt: 1, at: 0.5 };
  m.apply({ seq: 1, type: 'task', run_id: 'r', task_id: 'a', state: 'running', at: 0.5,
    agent: 'spec', instance: 'spec-2', decision: route });
  out.running = JSON.parse(JSON.stringify(m.byId.get('a').attempts));
  m.apply({ seq: 2, type: 'task', run_id: 'r', task_id: 'a', state: 'retrying', at: 1.0,
    agent: 'spec', decision: { type: 'retry_task', task_id: 'a', at: 1.0 } });
  out.retrying = [m.byId.get('a').state, m.byId.get('a').attempts[0].outcome,
    m.byId.get('a').attempts[0].finished_at];
  m.apply({ seq: 3, type: 'task', run_id: 'r', task_id: 'a', state: 'running', at: 2.0,
    agent: 'spec', instance: 'spec-1',
    decision: { ...route, instance: 'spec-1', attempt: 2, at: 2.0 } });
  m.apply({ seq: 4, type: 'task', run_id: 'r', task_id: 'a', state: 'succeeded', at: 3.0,
    agent: 'spec', instance: 'spec-1' });
  out.done = [m.byId.get('a').state, m.byId.get('a').attempts.map((a) => [a.number,
    a.agent_instance, a.started_at, a.finished_at, a.outcome])];
  out.other = m.apply({ seq: 5, type: 'task', run_id: 'other', task_id: 'a', state: 'failed' });
  m.apply({ seq: 6, type: 'task', run_id: 'r', task_id: 'new-sub', state: 'ready', at: 3.0 });
  out.sub = [m.byId.get('new-sub').state, m.tasks.length];
  m.apply({ seq: 7, type: 'run', run_id: 'r', state: 'finished', run_state: 'failed' });
  out.run = m.state;
  out.lanes = m.lanes().map(([name, bars]) => [name, bars.length]);
  out.decisions = m.decisions.map((d) => d.type);
  return out;
}"""


def test_the_run_model_follows_the_event_schema(idle_server: Server, page: Page) -> None:
    page.goto(idle_server.url + "/")
    out = page.evaluate(MODEL_CHECK)
    assert out["levels"] == [0, 1, 2]
    first = {"number": 1, "agent": "spec", "agent_instance": "spec-2", "started_at": 0.5}
    assert out["running"] == [{**first, "finished_at": None, "outcome": None}]
    assert out["retrying"] == ["ready", "error", 1.0]
    assert out["done"] == ["succeeded", [[1, "spec-2", 0.5, 1.0, "error"],
                                         [2, "spec-1", 2.0, 3.0, "succeeded"]]]  # fmt: skip
    assert out["other"] is False  # another run's event changes nothing
    assert out["sub"] == ["ready", 4]
    assert out["run"] == "failed"
    assert out["lanes"] == [["spec-1", 1], ["spec-2", 1]]
    assert out["decisions"] == ["route_task", "retry_task", "route_task"]


GROUPS_CHECK = """async ([caps, tasks, width]) => {
  const { RunModel } = await import('/js/model.js');
  const { DagView } = await import('/js/dag.js');
  const list = [];
  for (let i = 0; i < tasks; i++) {
    const layer = Math.floor(i / width);
    list.push({ id: `t${i}`, capability: `cap${i % caps}`, state: i % 2 ? 'succeeded' : 'running',
      attempts: [], depends_on: layer ? [`t${i - width}`] : [] });
  }
  const box = document.createElement('div');
  document.body.append(box);
  const model = new RunModel({ run_id: 'r', tasks: list, decisions: [] });
  new DagView(box, model, () => {}).render();
  const groups = [...box.querySelectorAll('.dag-group')];
  return [box.dataset.mode, groups.length, groups.reduce((n, g) => n + Number(g.dataset.count), 0),
    box.querySelectorAll('.edges path').length > 0];
}"""


@pytest.mark.parametrize(
    ("caps", "tasks", "width"),
    [(3, 5000, 10), (50, 5000, 100), (1, 10_000, 1)],  # long and narrow, many capabilities, a chain
)
def test_a_collapsed_graph_never_passes_its_bound(
    idle_server: Server, page: Page, caps: int, tasks: int, width: int
) -> None:
    page.goto(idle_server.url + "/")
    mode, groups, counted, edges = page.evaluate(GROUPS_CHECK, [caps, tasks, width])
    assert mode == "groups"
    assert 0 < groups <= 160
    assert counted == tasks
    assert edges
