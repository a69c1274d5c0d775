"""The dashboard in a real Chromium against a real ``metaagent serve`` on 127.0.0.1: sign in
(the login form, a wrong token, the ``#token=`` link, never in a URL), submit a workflow through
the API and watch its tasks turn green live, open a task and read the chosen agent and its
score breakdown, cancel a running run with its button; the runs list's filters in the URL, the
pool view and the decisions feed. Steps are ordered by state: agents wait on release files the
test writes, so nothing depends on timing. Screenshots go to ``out/screenshots/``.
Skipped when chromium is not installed (scripts/setup installs it as root)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from server_helpers import READ_TOKEN, TOKEN, Server, running_server, wait_for_state

from bench.dashboard import chromium_path

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed"),
    pytest.mark.timeout(180),
]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "screenshots"
GATE = """import pathlib, sys, time
task, gates = sys.argv[1], pathlib.Path(sys.argv[2])
deadline = time.monotonic() + 120
while (gates / ("hold-" + task)).exists() and time.monotonic() < deadline:
    time.sleep(0.05)
if task.startswith("flaky") and not (gates / ("fixed-" + task)).exists():
    sys.exit("failing " + task + " on purpose")
sys.stderr.write("did " + task + "\\n")
print("done " + task)
"""


class Gates:
    """Tasks whose agent waits while ``hold-<task>`` exists in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.script = folder / "gate.py"
        self.script.write_text(GATE)

    def hold(self, *tasks: str) -> None:
        for t in tasks:
            (self.folder / f"hold-{t}").write_text("")

    def release(self, task: str) -> None:
        (self.folder / f"hold-{task}").unlink()

    def agent(self, name: str, proficiency: float) -> dict[str, Any]:
        argv = [sys.executable, str(self.script), "{task_id}", str(self.folder)]
        return {"name": name, "capabilities": {"work": proficiency}, "concurrency": 2,
                "runner": {"type": "command", "argv": argv}}  # fmt: skip

    def workflow(self, name: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        agents = [self.agent("dash-strong", 0.9), self.agent("dash-weak", 0.4)]
        return {"name": name, "agents": agents, "tasks": tasks}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("dashboard")) as s:
        yield s


@pytest.fixture(scope="module")
def gates(server: Server) -> Gates:
    return Gates(server.db.parent / "gates")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield p
    finally:
        context.close()
    assert errors == [], errors


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def signed_in(page: Page, server: Server, query: str = "") -> None:
    page.goto(f"{server.url}/#token={TOKEN}")
    page.wait_for_selector("body[data-ready=true] #runs")
    if query:
        page.evaluate("q => history.pushState(null, '', '/?' + q)", query)
        page.evaluate("dispatchEvent(new PopStateEvent('popstate'))")
        page.wait_for_selector("body[data-ready=true]")


def submit(server: Server, doc: dict[str, Any], **extra: Any) -> str:
    with server.client() as c:
        r = c.post("/v1/runs", json={"workflow": doc, **extra})
        assert r.status_code == 201, r.text
        run_id: str = r.json()["run_id"]
        return run_id


def state_of(page: Page, task: str) -> str | None:
    return page.locator(f'#dag [data-task-id="{task}"]').get_attribute("data-state")


def wait_state(page: Page, task: str, state: str) -> None:
    page.wait_for_selector(f'#dag [data-task-id="{task}"][data-state="{state}"]', timeout=60_000)


def test_sign_in_with_the_form_then_with_a_link_and_the_token_never_in_a_url(
    server: Server, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.on("websocket", lambda ws: urls.append(ws.url))
        page.goto(server.url + "/")
        page.wait_for_selector("#login")
        page.fill("#token", "not-the-token")
        page.click("#login button[type=submit]")
        page.wait_for_selector("#login-error:has-text('wrong token')")
        shot(page, "login")
        page.fill("#token", TOKEN)
        page.click("#login button[type=submit]")
        page.wait_for_selector("body[data-ready=true] #runs")
        assert page.evaluate("sessionStorage.getItem('metaagent.token')") == TOKEN
        page.click("#signout")
        page.wait_for_selector("#login")
        assert page.evaluate("sessionStorage.getItem('metaagent.token')") is None
        # A link signs in at once; the fragment leaves the address bar.
        link = context.new_page()
        link.on("request", lambda r: urls.append(r.url))
        link.on("websocket", lambda ws: urls.append(ws.url))
        link.goto(f"{server.url}/?view=runs#token={TOKEN}")
        link.wait_for_selector("body[data-ready=true] #runs")
        link.wait_for_selector("#live.on")
        assert "token" not in link.url
        assert urls
        assert not [u for u in urls if TOKEN in u]
    finally:
        context.close()


def test_a_run_turns_green_live_and_its_task_says_why_its_agent(
    server: Server, gates: Gates, page: Page
) -> None:
    gates.hold("build", "test")
    doc = gates.workflow("live-demo", [
        {"id": "plan", "capability": "work"},
        {"id": "build", "capability": "work", "depends_on": ["plan"]},
        {"id": "docs", "capability": "work", "depends_on": ["plan"]},
        {"id": "test", "capability": "work", "depends_on": ["build"]},
    ])  # fmt: skip
    run_id = submit(server, doc, labels={"team": "dash"})
    reports: list[str] = []
    page.on("request", lambda r: reports.append(r.url) if r.url.endswith(run_id) else None)
    signed_in(page, server, f"view=run&run={run_id}")
    page.evaluate("window.sameDocument = true")
    wait_state(page, "build", "running")
    wait_state(page, "plan", "succeeded")
    wait_state(page, "docs", "succeeded")
    assert state_of(page, "test") == "pending"
    shot(page, "run-live")
    gates.release("build")
    wait_state(page, "build", "succeeded")
    wait_state(page, "test", "running")
    gates.release("test")
    wait_state(page, "test", "succeeded")
    page.wait_for_selector(".run-title .badge:has-text('succeeded')")
    # Live: the same document all along, and the report fetched once before the run ended.
    assert page.evaluate("window.sameDocument") is True
    assert len(reports) <= 2  # the first load, and one re-read once the run finished
    # The drawer of a task: the chosen agent and its breakdown, as the API explains it.
    with server.client() as c:
        explain = c.get(f"/v1/runs/{run_id}/tasks/build/explain").json()
    route = next(d["route"] for d in explain["decisions"] if d["type"] == "route_task")
    page.locator('#dag [data-task-id="build"]').click()
    drawer = page.locator("#drawer")
    drawer.locator(".why-agent").first.wait_for()
    assert drawer.locator(".why-agent").first.inner_text() == route["instance"]
    assert drawer.locator(".why-summary").first.inner_text() == route["summary"]
    rows = drawer.locator("table.candidates tbody tr")
    assert rows.count() == 1 + len(route["candidates"])
    assert {
        rows.nth(i).locator("td").first.inner_text().lstrip("★ ") for i in range(1, rows.count())
    } == {c["agent"] for c in route["candidates"]}
    assert (
        drawer.locator("table.candidates tr.winner td").nth(1).inner_text()
        == f"{route['score']:.3f}"
    )
    assert "did build" in (drawer.locator("pre.log").first.text_content() or "")
    assert "done build" in drawer.locator("pre.output").inner_text()
    assert "task=build" in page.url
    shot(page, "task-drawer")


def test_cancel_a_running_run_with_its_button(server: Server, gates: Gates, page: Page) -> None:
    gates.hold("stuck")
    run_id = submit(server, gates.workflow("to-cancel", [
        {"id": "stuck", "capability": "work"},
        {"id": "after", "capability": "work", "depends_on": ["stuck"]},
    ]))  # fmt: skip
    signed_in(page, server, f"view=run&run={run_id}")
    wait_state(page, "stuck", "running")
    page.click("#cancel-run")
    page.wait_for_selector(".action-note:has-text('cancel run: requested')")
    wait_state(page, "stuck", "cancelled")
    assert state_of(page, "after") in ("cancelled", "skipped")
    with server.client() as c:
        report = wait_for_state(c, run_id, ["cancelled"])
    assert {t["id"]: t["state"] for t in report["tasks"]}["stuck"] == "cancelled"
    page.wait_for_selector(".run-title .badge:has-text('cancelled')")
    shot(page, "run-cancelled")
    gates.release("stuck")


def test_a_read_only_token_watches_but_its_cancel_is_refused(
    server: Server, gates: Gates, page: Page
) -> None:
    gates.hold("watched")
    run_id = submit(server, gates.workflow("read-only", [{"id": "watched", "capability": "work"}]))
    page.goto(f"{server.url}/?view=run&run={run_id}#token={READ_TOKEN}")
    wait_state(page, "watched", "running")
    page.click("#cancel-run")
    page.wait_for_selector(".action-error:has-text('403')")
    assert "may only read" in page.locator(".action-error").inner_text()
    assert state_of(page, "watched") == "running"  # nothing was cancelled
    gates.release("watched")
    wait_state(page, "watched", "succeeded")  # and it still watches, live
    page.wait_for_selector(".run-title .badge:has-text('succeeded')")
    assert page.locator("#cancel-run").is_disabled()  # the run is over


def test_retry_a_failed_run_with_its_button(server: Server, gates: Gates, page: Page) -> None:
    run_id = submit(server, gates.workflow("to-retry", [
        {"id": "fine", "capability": "work"},
        {"id": "flaky", "capability": "work", "max_attempts": 1},
        {"id": "later", "capability": "work", "depends_on": ["flaky"]},
    ]))  # fmt: skip
    signed_in(page, server, f"view=run&run={run_id}")
    wait_state(page, "flaky", "failed")
    wait_state(page, "later", "skipped")
    page.wait_for_selector(".run-title .badge:has-text('failed')")
    page.locator('#dag [data-task-id="flaky"]').click()
    page.wait_for_selector("#drawer .task-error:has-text('failing flaky on purpose')")
    (gates.folder / "fixed-flaky").write_text("")
    page.keyboard.press("Escape")
    page.click("#retry-run")
    page.wait_for_function("rid => !location.search.includes(rid)", arg=run_id)
    assert "view=run" in page.url
    wait_state(page, "later", "succeeded")
    assert state_of(page, "flaky") == "succeeded"
    assert state_of(page, "fine") == "succeeded"  # kept from the first run
    with server.client() as c:
        new_id = page.evaluate("new URLSearchParams(location.search).get('run')")
        assert c.get(f"/v1/runs/{new_id}").json()["retry_of"] == run_id


def test_the_runs_list_keeps_its_filters_in_the_url(
    server: Server, gates: Gates, page: Page
) -> None:
    run_id = submit(server, gates.workflow("filtered", [{"id": "one", "capability": "work"}]),
                    labels={"team": "filters"})  # fmt: skip
    with server.client() as c:
        wait_for_state(c, run_id, ["succeeded"])
    signed_in(page, server, "view=runs&state=succeeded&label=team:filters")
    page.wait_for_selector(f'#runs tr[data-run-id="{run_id}"]')
    assert page.locator("#filter-state").input_value() == "succeeded"
    assert page.locator("#filter-label").input_value() == "team:filters"
    assert page.locator("#runs tbody tr").count() == 1
    page.select_option("#filter-state", "failed")
    page.wait_for_selector("#runs tbody tr", state="detached")
    assert "state=failed" in page.url
    assert "label=team%3Afilters" in page.url
    page.go_back()
    page.wait_for_selector(f'#runs tr[data-run-id="{run_id}"]')
    page.fill("#filter-label", "")
    page.fill("#filter-q", "filtered")
    page.press("#filter-q", "Enter")
    page.wait_for_function("location.search.includes('q=filtered')")
    page.wait_for_selector(f'#runs tr[data-run-id="{run_id}"] a.run-link')
    shot(page, "runs")
    page.click(f'#runs tr[data-run-id="{run_id}"] a.run-link')
    page.wait_for_selector(
        'body[data-ready=true] #dag [data-task-id="one"][data-state="succeeded"]'
    )


def test_the_pool_view_and_the_decisions_feed(server: Server, gates: Gates, page: Page) -> None:
    run_id = submit(server, gates.workflow("pool-demo", [{"id": "p1", "capability": "work"}]))
    with server.client() as c:
        wait_for_state(c, run_id, ["succeeded"])
    signed_in(page, server, "view=pool")
    page.wait_for_selector("#pool-cards #card-instances")
    assert int(page.locator("#card-instances b").inner_text()) >= 2
    assert page.locator('#pool-instances tr[data-instance="dash-strong"]').count() == 1
    page.wait_for_selector('#learned [data-cell="dash-strong|work"]')
    assert "declared 0.90" in page.locator('#learned [data-cell="dash-strong|work"]').inner_text()
    shot(page, "pool")
    page.click("nav.top a[data-view=decisions]")
    page.wait_for_selector("ol.feed li.d-route_task")
    page.select_option(".feed-kind", "quarantine")
    page.wait_for_function("location.search.includes('kind=quarantine')")
    assert page.locator("ol.feed li.d-route_task").count() == 0
    page.select_option(".feed-kind", "route")
    page.wait_for_function("location.search.includes('kind=route')")
    assert page.locator("ol.feed li").count() == page.locator("ol.feed li.d-route_task").count()
    page.locator(f"ol.feed li.d-route_task:has-text('{run_id}') a.task-link").first.click()
    page.wait_for_selector("#drawer .why-agent")
    assert f"run={run_id}" in page.url
    shot(page, "decisions")
