"""Dashboard first render of a large run in Chromium: the live dashboard served by a real
``metaagent serve`` (target: a 5,000-task run under 2 s), against the same run view opened
from the self-contained HTML report (no network: the baseline of what rendering alone costs).

The run is journaled directly (a layered DAG, one routed attempt per task with its
candidates), so the figure is the page's: from navigation start to the run view drawn (the
DAG, the timeline, the table's first rows and the decisions), as ``performance.now()`` in the
page. Also the helpers the browser tests share: finding Chromium, starting a server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent.core.decisions import RouteTask, SpawnAgent
from metaagent.core.tasks import AgentTask, Attempt, Outcome, TaskState
from metaagent.journal.sqlite import SqliteJournal
from metaagent.report.html import write_html

if TYPE_CHECKING:
    from collections.abc import Sequence

    from playwright.sync_api import Browser, Page, Playwright

TARGET_S = 2.0  # first render of a 5,000-task run
TOKEN = "bench-dashboard-token"
_LISTENING = re.compile(r"listening on (http://\S+)")


def chromium_path() -> str | None:
    """Debian's chromium (or a chromium-browser) on PATH; None when there is none."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(pw: Playwright) -> Browser:
    """Chromium from PATH, by ``executable_path`` (playwright's own download is never used)."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    return pw.chromium.launch(
        executable_path=path, args=["--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage"]
    )


def journal_run(db: Path, tasks: int, *, width: int = 100, instances: int = 8) -> str:
    """Journal a finished run of ``tasks`` tasks in layers of ``width`` (each task depends on
    two of the layer before), every task succeeded in one routed attempt; returns its id."""
    run_id = f"run-dash{tasks}"
    specs = [f"agent-{k}" for k in range(instances)]
    defs: list[AgentTask] = []
    for i in range(tasks):
        layer, col = divmod(i, width)
        deps = (
            ()
            if layer == 0
            else tuple(
                dict.fromkeys(
                    (f"t{(layer - 1) * width + col}", f"t{(layer - 1) * width + (col + 1) % width}")
                )
            )
        )
        defs.append(AgentTask(f"t{i}", ("python", "testing", "docs")[i % 3], depends_on=deps))
    journal = SqliteJournal(db)
    try:
        journal.open_run(run_id, f"dashboard-{tasks}", defs)
        for spec in specs:
            journal.decision(run_id, SpawnAgent(0.0, None, None, "min_instances", spec, spec), 0.0)
        for i, task in enumerate(defs):
            layer, col = divmod(i, width)
            spec = specs[col % instances]
            start, end = layer * 1.0 + (col % 7) * 0.01, layer * 1.0 + 0.9
            ranked = tuple(
                # (wait, run, retry, scarcity, penalty, success, cost): ``SCORE_PARTS``
                (s, 0.9 - 0.1 * k, (0.2 * k, 1.0, 0.1 + 0.05 * k, 0.0, 0.0, 0.9 - 0.05 * k, 0.0))
                for k, s in enumerate([spec, *[x for x in specs if x != spec][:2]])
            )
            route = RouteTask(
                start,
                run_id,
                task.id,
                f"best of 3 scored for {task.capability!r}",
                1,
                spec,
                spec,
                ranked[0][1],
                ranked[0][2],
                ranked,
            )
            journal.decision(run_id, route, start)
            attempt = Attempt(1, spec, spec, start)
            journal.attempt_started(run_id, task.id, attempt)
            attempt.finished_at, attempt.outcome = end, Outcome.SUCCEEDED
            journal.attempt_finished(run_id, task.id, attempt)
            journal.task_finished(run_id, task.id, TaskState.SUCCEEDED, f"out {i}", None, end)
        journal.run_finished(run_id)
        journal.flush()
    finally:
        journal.close()
    return run_id


@dataclass
class Server:
    """A ``metaagent serve`` subprocess on 127.0.0.1 (any free port)."""

    process: subprocess.Popen[str]
    url: str
    reader: threading.Thread

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 15 s) to this process only, then close its pipe."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_server(db: Path, token: str = TOKEN, *, timeout_s: float = 30.0,
                 extra: Sequence[str] = ()) -> Server:  # fmt: skip
    """Start ``metaagent serve --port 0`` on ``db``; returns once it listens (its URL read from
    what it prints). Raises ``RuntimeError`` with its output if it does not start."""
    env = {**os.environ, "METAAGENT_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "metaagent.cli", "serve", "--host", "127.0.0.1", "--port", "0",
            "--db", str(db), "--workdir", str(db.parent), *extra]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=env, cwd=db.parent)  # fmt: skip
    seen: list[str] = []
    found: list[str] = []
    listening = threading.Event()

    def read() -> None:  # keeps reading, so that the server never blocks on a full pipe
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match.group(1).rstrip("/."))
                listening.set()
        listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    listening.wait(timeout_s)
    server = Server(process, found[0] if found else "", reader)
    if not found:
        server.stop()
        raise RuntimeError("metaagent serve did not start:\n" + "".join(seen)[-3000:])
    return server


def rendered_ms(page: Page, url: str, *, timeout_ms: float = 60_000) -> float:
    """Open ``url``; the page's own ``performance.now()`` when the view was drawn."""
    page.goto(url)
    page.wait_for_selector("body[data-ready=true] #dag svg", timeout=timeout_ms)
    return float(page.evaluate("Number(document.body.dataset.renderedMs)"))


def measure(tasks: int, repeats: int = 3, folder: Path | None = None) -> dict[str, object]:
    """First render (ms) of a ``tasks``-task run: live dashboard and HTML report, best and
    median of ``repeats`` fresh page loads each, and the report's size. ``folder`` keeps the
    journal and the report (default: a temporary folder, removed after). Needs Chromium
    (``chromium_path()``); what ``python -m bench service`` may call too."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = folder or Path(tmp)
        db = root / "dash.db"
        run_id = journal_run(db, tasks)
        journal = SqliteJournal(db)
        try:
            report = root / "report.html"
            size = write_html(journal.load_run(run_id), report)
        finally:
            journal.close()
        server = start_server(db)
        live: list[float] = []
        offline: list[float] = []
        try:
            with sync_playwright() as pw:
                browser = launch(pw)
                try:
                    for _ in range(repeats):
                        context = browser.new_context(viewport={"width": 1400, "height": 1000})
                        page = context.new_page()
                        page.goto(f"{server.url}/#token={TOKEN}")
                        page.wait_for_selector("body[data-ready=true]")
                        live.append(rendered_ms(page, f"{server.url}/?view=run&run={run_id}"))
                        offline.append(rendered_ms(page, report.as_uri()))
                        context.close()
                finally:
                    browser.close()
        finally:
            server.stop()
    return {
        "tasks": tasks,
        "dashboard_ms_best": min(live),
        "dashboard_ms_median": statistics.median(live),
        "report_ms_best": min(offline),
        "report_ms_median": statistics.median(offline),
        "report_bytes": size,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench dashboard", description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if chromium_path() is None:
        result: dict[str, object] = {"bench": "dashboard", "skipped": "chromium is not installed"}
        print("chromium is not installed (apt-get install chromium): nothing measured")
        print_json(result)
        return result
    figures = measure(args.tasks, args.repeats)
    ok = float(figures["dashboard_ms_median"]) / 1000 < TARGET_S  # type: ignore[arg-type]
    print_table(
        f"dashboard first render of a {args.tasks:,}-task run in Chromium ({args.repeats} loads)",
        ["page", "best ms", "median ms", "target"],
        [
            ["live dashboard (serve)", figures["dashboard_ms_best"],
             figures["dashboard_ms_median"], f"< {TARGET_S * 1000:.0f} ms"],
            ["HTML report (file, baseline)", figures["report_ms_best"],
             figures["report_ms_median"], "-"],
        ],
    )  # fmt: skip
    result = {"bench": "dashboard", "at": stamp(), **figures, "target_s": TARGET_S, "ok": ok}
    print_json(result)
    return result
