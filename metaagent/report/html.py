"""``metaagent report RUN --html OUT.html``: one self-contained HTML file of a journaled run
(summary, DAG, timeline per agent instance, task table, decisions, and the task drawer with
"why this agent"), to attach to a ticket.

The page is the dashboard's run view itself: its JavaScript modules (shipped in
``metaagent/service/dashboard/js``) are inlined in dependency order with their ``import`` lines
dropped and their ``export`` keywords stripped, its CSS inlined, and the run embedded as JSON.
A Content-Security-Policy forbids every fetch, so the file provably needs nothing else.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent import __version__
from metaagent.report.view import run_view

if TYPE_CHECKING:
    from metaagent.journal.base import StoredRun

DASHBOARD = Path(__file__).resolve().parent.parent / "service" / "dashboard"
"""The dashboard's assets (read as files: the report needs none of the service's code)."""

REPORT_MODULES = ("util", "model", "dag", "gantt", "table", "drawer", "feed", "runview", "report")
"""The modules of the report page, each after every module it imports."""

_IMPORT = re.compile(r'^import\s+\{[^}]*\}\s+from\s+"\./([a-z]+)\.js";\s*$', re.MULTILINE)
_EXPORT = re.compile(
    r"^export\s+((?:async\s+)?(?:function|class|const|let)\s+)([A-Za-z_$][\w$]*)", re.MULTILINE
)

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
"""Nothing may be fetched: the report is whole or it does not render."""


class BundleError(RuntimeError):
    """A dashboard module cannot be inlined (an import out of order, or one not understood)."""


def bundle(modules: tuple[str, ...] = REPORT_MODULES, root: Path = DASHBOARD / "js") -> str:
    """The modules as one classic script, in this order: each module's body in a function of
    its own (its private names stay private), its exported names declared for those after it.

    Raises ``BundleError`` naming the module when one imports a module not before it, exports
    a name another module exports, or has an import or export this bundler does not understand.
    """
    seen: set[str] = set()
    exported: dict[str, str] = {}
    parts: list[str] = []
    for name in modules:
        source = (root / f"{name}.js").read_text(encoding="utf-8")
        for dep in _IMPORT.findall(source):
            if dep not in seen:
                raise BundleError(f"{name}.js imports {dep}.js, which is not bundled before it")
        names = [m[1] for m in _EXPORT.findall(source)]
        for n in names:
            if n in exported:
                raise BundleError(f"{name}.js exports {n}, which {exported[n]}.js exports too")
            exported[n] = name
        body = _EXPORT.sub(r"\1\2", _IMPORT.sub("", source))
        for line_no, line in enumerate(body.splitlines(), 1):
            if re.match(r"\s*(import|export)\b", line):
                raise BundleError(f"{name}.js:{line_no}: cannot inline {line.strip()!r}")
        head = f"const {{ {', '.join(names)} }} = " if names else ""
        parts.append(
            f"// --- {name}.js\n{head}(() => {{\n{body}\nreturn {{ {', '.join(names)} }};\n}})();"
        )
        seen.add(name)
    return "(() => {\n" + "\n".join(parts) + "\n})();\n"


def embed_json(data: object) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can close it early)."""
    text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(stored: StoredRun, *, generated_at: datetime | None = None) -> str:
    """The self-contained HTML report of ``stored``."""
    data = compact(run_view(stored))
    when = (generated_at or datetime.now(tz=UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    data["generated"] = f"metaagent {__version__}, {when}"
    css = (DASHBOARD / "app.css").read_text(encoding="utf-8")
    title = html.escape(f"{stored.info.name} ({stored.info.run_id}) · metaagent report")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
        '<nav class="top"><span class="brand">metaagent</span><span>run report</span>'
        '<span class="right muted" id="generated"></span></nav>\n'
        '<main id="app"><noscript>This report needs JavaScript.</noscript></main>\n'
        f'<script type="application/json" id="report-data">{embed_json(data)}</script>\n'
        f"<script>\n{bundle()}</script>\n</body>\n</html>\n"
    )


TEXT_CAP = 64 * 1024
"""Characters of a task's output, and of an attempt's log, the report keeps (the rest is named
by a marker: ``metaagent show --json`` and ``metaagent logs`` have it all)."""

_ROUTE_KEPT = ("type", "at", "run_id", "task_id", "agent", "reason", "attempt", "instance", "score")


def compact(view: dict[str, object]) -> dict[str, object]:
    """``view`` without what the page holds twice: the routing weights once (not per task),
    and route decisions in the feed without their candidates (each task's trail has them)."""
    trails = view.get("explain")
    weights: object = None
    if isinstance(trails, dict):
        for trail in trails.values():
            weights = trail.pop("weights", weights)
            if trail.get("weights_note") is None:
                trail.pop("weights_note", None)
    view["weights"] = weights
    tasks = view.get("tasks")
    for task in tasks if isinstance(tasks, list) else []:
        task["output"] = capped(task.get("output"), "metaagent show RUN --json")
        for attempt in task.get("attempts") or []:
            attempt["log"] = capped(attempt.get("log"), "metaagent logs RUN TASK")
    decisions = view.get("decisions")
    if isinstance(decisions, list):
        view["decisions"] = [
            {k: d[k] for k in _ROUTE_KEPT if k in d} if d.get("type") == "route_task" else d
            for d in decisions
        ]
    return view


def capped(value: object, where: str, cap: int = TEXT_CAP) -> object:
    """``value`` itself when its text (a string, or else its JSON) is at most ``cap``
    characters; else the first ``cap`` of it and a marker saying how much more and where."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= cap:
        return value
    return f"{text[:cap]}\n[... {len(text) - cap:,} more characters in the journal: {where}]"


def write_html(stored: StoredRun, path: Path) -> int:
    """Write the report of ``stored`` to ``path``; returns its size in bytes. ``OSError`` when
    it cannot be written."""
    text = render_html(stored)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(data)
    return len(data)
