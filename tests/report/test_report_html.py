"""``metaagent report RUN --html OUT.html``: one self-contained file from a real journal (a
real run of real command agents, one of which fails), checked as HTML, and opened in a real
Chromium (skipped without one) where the run view draws every task and explains its route."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from html.parser import HTMLParser
from typing import TYPE_CHECKING

import pytest

from bench.dashboard import chromium_path, journal_run, launch
from metaagent.core.decisions import SCORE_PARTS
from metaagent.core.routing.weights import RoutingWeights
from metaagent.journal.sqlite import SqliteJournal
from metaagent.report.html import BundleError, bundle, capped, embed_json, render_html

if TYPE_CHECKING:
    from pathlib import Path

CLI = [sys.executable, "-m", "metaagent.cli"]
STEP = """import sys, time
time.sleep(float(sys.argv[1]))
sys.stderr.write("working\\n")
print("ok")
"""
WORKFLOW = """
name: report-demo
agents:
  - name: strong
    capabilities: {{python: 0.9, testing: 0.6}}
    concurrency: 2
    runner: {{type: command, argv: ["{python}", "{step}", "{{prompt}}"]}}
  - name: weak
    capabilities: {{python: 0.5, testing: 0.9}}
    concurrency: 4  # never busy: every routing of a python task scores both agents
    runner: {{type: command, argv: ["{python}", "{step}", "{{prompt}}"]}}
tasks:
  - {{id: design, capability: python, prompt: "0.05"}}
  - {{id: api, capability: python, prompt: "0.05", depends_on: [design]}}
  - {{id: db, capability: python, prompt: "0.05", depends_on: [design]}}
  - {{id: tests, capability: testing, prompt: "0.05", depends_on: [api, db]}}
  - {{id: broken, capability: testing, prompt: "not-a-number", max_attempts: 2}}
  - {{id: after-broken, capability: python, prompt: "0.01", depends_on: [broken]}}
"""
DEPS = {"design": [], "api": ["design"], "db": ["design"], "tests": ["api", "db"],
        "broken": [], "after-broken": ["broken"]}  # fmt: skip

needs_chromium = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (apt-get install chromium)"
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


@pytest.fixture(scope="module")
def journaled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A journal holding one real run (exit 1: a task failed, its dependent was skipped)."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "step.py").write_text(STEP)
    step = folder / "step.py"
    (folder / "wf.yaml").write_text(WORKFLOW.format(python=sys.executable, step=step))
    done = cli("run", "wf.yaml", "--db", "j.db", "--json", "out.json", "-q", cwd=folder)
    assert done.returncode == 1, done.stderr
    return folder, json.loads((folder / "out.json").read_text())["run_id"]


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self.scripts.append((self._in_script, data))


def parsed(path: Path) -> Elements:
    elements = Elements()
    elements.feed(path.read_text(encoding="utf-8"))
    return elements


def embedded(elements: Elements) -> dict[str, object]:
    data = [text for attrs, text in elements.scripts if attrs.get("id") == "report-data"]
    assert len(data) == 1
    loaded: dict[str, object] = json.loads(data[0])
    return loaded


def test_the_report_is_one_self_contained_file_with_every_task(
    journaled: tuple[Path, str],
) -> None:
    folder, run_id = journaled
    done = cli("report", run_id, "--db", "j.db", "--html", "out/run.html", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "written to out/run.html" in done.stdout
    page = folder / "out" / "run.html"
    elements = parsed(page)
    # Nothing outside the file: no attribute loads or links anything, no external element.
    for tag, attrs in elements.tags:
        assert "src" not in attrs, (tag, attrs)
        assert "href" not in attrs, (tag, attrs)
        assert tag not in ("link", "img", "iframe", "object", "embed", "base")
    csp = [a for t, a in elements.tags if t == "meta" and a.get("http-equiv")]
    assert csp
    assert "default-src 'none'" in str(csp[0]["content"])
    data = embedded(elements)
    tasks = {t["id"]: t for t in data["tasks"]}  # type: ignore[attr-defined]
    assert set(tasks) == set(DEPS)
    assert {k: t["depends_on"] for k, t in tasks.items()} == DEPS
    assert tasks["broken"]["state"] == "failed"
    assert len(tasks["broken"]["attempts"]) == 2
    assert tasks["after-broken"]["state"] == "skipped"
    assert tasks["tests"]["attempts"][0]["log"] == "working"
    assert data["state"] == "failed"
    assert data["run_id"] == run_id
    # The routing trail of every routed task: candidates with breakdowns, and why.
    parts = dataclasses.asdict(RoutingWeights())
    assert data["weights"] == {p: parts[p] for p in SCORE_PARTS}  # the parts' weights only
    trail = data["explain"]["api"]  # type: ignore[index]
    route = next(d["route"] for d in trail["decisions"] if d["type"] == "route_task")
    assert route["instance"] == tasks["api"]["agent_instance"] == "strong"
    assert {c["agent"] for c in route["candidates"]} == {"strong", "weak"}
    assert route["runner_up"] == "weak"
    assert route["margin"] > 0
    assert "strong won with" in route["summary"]
    # The decisions are all there (the feed), and the page's script is the run view.
    assert len(data["decisions"]) >= 7  # type: ignore[arg-type]
    script = [text for attrs, text in elements.scripts if not attrs]
    assert len(script) == 1
    assert "class RunView" in script[0]
    assert "class DagView" in script[0]


def test_report_refuses_what_it_cannot_do_with_exit_2(
    journaled: tuple[Path, str], tmp_path: Path
) -> None:
    folder, run_id = journaled
    unknown = cli("report", "run-nope", "--db", str(folder / "j.db"), "--html", "x.html",
                  cwd=tmp_path)  # fmt: skip
    assert unknown.returncode == 2
    assert "no run 'run-nope'" in unknown.stderr
    nojournal = cli("report", run_id, "--db", "missing.db", "--html", "x.html", cwd=tmp_path)
    assert nojournal.returncode == 2
    assert "no journal there" in nojournal.stderr
    (tmp_path / "adir").mkdir()
    isdir = cli("report", run_id, "--db", str(folder / "j.db"), "--html", "adir", cwd=tmp_path)
    assert isdir.returncode == 2
    assert "is a directory" in isdir.stderr
    missing = cli("report", run_id, "--db", str(folder / "j.db"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "--html" in missing.stderr
    assert not (tmp_path / "x.html").exists()


def test_the_bundler_keeps_modules_apart_and_refuses_what_it_cannot_inline(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.js").write_text("export const A = 1;\nconst ROW = 2;\nexport function f() {}\n")
    (tmp_path / "b.js").write_text(
        'import { A } from "./a.js";\nconst ROW = 3;\nexport class B {}\n'
    )
    script = bundle(("a", "b"), tmp_path)
    assert "const { A, f } = (() => {" in script
    assert "const { B } = (() => {" in script
    assert "import" not in script
    assert "export" not in script
    with pytest.raises(BundleError, match=r"b\.js imports a\.js, which is not bundled before it"):
        bundle(("b", "a"), tmp_path)
    (tmp_path / "c.js").write_text("export const A = 5;\n")
    with pytest.raises(BundleError, match=r"c\.js exports A, which a\.js exports too"):
        bundle(("a", "c"), tmp_path)
    (tmp_path / "d.js").write_text("export default 5;\n")
    with pytest.raises(BundleError, match=r"d\.js:1: cannot inline 'export default 5;'"):
        bundle(("d",), tmp_path)
    # The shipped modules bundle as they are.
    assert "// --- report.js" in bundle()


def test_long_outputs_and_logs_are_capped_with_a_marker() -> None:
    assert capped("short", "here", cap=10) == "short"
    assert capped({"a": 1}, "here", cap=10) == {"a": 1}
    assert capped(None, "here") is None
    assert capped("x" * 25, "metaagent logs RUN TASK", cap=10) == (
        "xxxxxxxxxx\n[... 15 more characters in the journal: metaagent logs RUN TASK]"
    )
    assert (
        capped({"k": "y" * 20}, "there", cap=8)
        == '{"k": "y\n[... 21 more characters in the journal: there]'
    )


def test_embedded_json_cannot_end_its_script_early() -> None:
    text = embed_json({"output": "</script><script>alert(1)</script> & <!--"})
    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert json.loads(text) == {"output": "</script><script>alert(1)</script> & <!--"}


@needs_chromium
@pytest.mark.timeout(120)
def test_the_report_renders_in_chromium_and_explains_a_route(
    journaled: tuple[Path, str], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    folder, run_id = journaled
    store = SqliteJournal(folder / "j.db")
    try:
        page_file = tmp_path / "run.html"
        page_file.write_text(render_html(store.load_run(run_id)), encoding="utf-8")
    finally:
        store.close()
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-ready=true]")
            assert page.locator("#dag .dag-node").count() == len(DEPS)
            assert (
                page.locator('#dag [data-task-id="broken"]').get_attribute("data-state") == "failed"
            )
            assert page.locator("#tasks .table-summary").inner_text() == "6 of 6 tasks"
            bars = page.locator("#gantt canvas").get_attribute("data-bars")
            assert bars == "6"  # four tasks once, broken twice, the skipped one never
            page.locator('#dag [data-task-id="api"]').click()
            drawer = page.locator("#drawer")
            drawer.locator(".why-agent").first.wait_for()
            assert drawer.locator(".why-agent").first.inner_text() == "strong"
            assert "strong won with" in drawer.locator(".why-summary").first.inner_text()
            assert drawer.locator("table.candidates tbody tr").count() == 3  # weights + 2
            page.locator("#drawer .close").click()
            page.locator('#tasks [data-task-id="broken"]').click()
            assert "attempts (2)" in (drawer.text_content() or "")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert errors == []
            assert requests == [page_file.as_uri()]  # the file itself, and nothing else
        finally:
            browser.close()


@needs_chromium
@pytest.mark.timeout(180)
def test_a_large_run_collapses_by_level_and_keeps_the_table_virtual(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    run_id = journal_run(tmp_path / "big.db", 3000, width=60)
    store = SqliteJournal(tmp_path / "big.db")
    try:
        text = render_html(store.load_run(run_id))
    finally:
        store.close()
    page_file = tmp_path / "big.html"
    page_file.write_text(text, encoding="utf-8")
    ids = {
        t["id"]
        for t in json.loads(text.split('id="report-data">')[1].split("</script>")[0])["tasks"]
    }
    assert ids == {f"t{i}" for i in range(3000)}
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-ready=true]")
            assert page.locator("#dag").get_attribute("data-mode") == "groups"
            groups = page.locator("#dag .dag-group")
            assert 0 < groups.count() <= 160
            assert page.locator("#dag .dag-square").count() == 0
            groups.first.locator(".group-box").click()
            assert page.locator("#dag .dag-square").count() > 0  # expanded into its tasks
            assert page.locator("#tasks .tspacer .trow").count() < 80  # virtual: rows in view
            assert page.locator("#tasks .table-summary").inner_text() == "3000 of 3000 tasks"
            page.locator("#tasks .table-filter").fill("t2999")
            page.wait_for_function(
                "document.querySelector('#tasks .table-summary').textContent === '1 of 3000 tasks'"
            )
            page.locator('#tasks [data-task-id="t2999"]').click()
            page.locator("#drawer .why-agent").first.wait_for()
        finally:
            browser.close()
