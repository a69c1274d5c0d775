"""Area agents: turn the tool outputs of one review area into a 0..100 score and a grade.

Usage: ``summarize.py AREA`` with AREA one of ``quality``, ``risk``, ``docs``. Upstream outputs
are found by their ``tool`` field, so task ids in the workflow are free to change. Each check
costs points, capped per check; densities are per thousand lines of source code (kLOC).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from _common import (
    Attempt,
    Finding,
    as_dict,
    as_float,
    emit,
    fail,
    metric,
    parse_findings,
    read_attempt,
    top_findings,
)

if TYPE_CHECKING:
    from collections.abc import Callable

AREA_FINDINGS = 10


@dataclass(frozen=True)
class Check:
    """One tool's contribution to an area: points lost (already capped) and why."""

    tool: str
    points: float
    cap: float


class Tools:
    """Upstream tool outputs keyed by their ``tool`` field."""

    def __init__(self, attempt: Attempt) -> None:
        self.by_tool: dict[str, dict[str, object]] = {}
        for task_id, out in attempt.upstream.items():
            d = as_dict(out, f"upstream.{task_id}")
            self.by_tool[str(d.get("tool", task_id))] = d

    def get(self, tool: str) -> dict[str, object]:
        """The output of ``tool``; exits with an error when no upstream task produced it."""
        if tool not in self.by_tool:
            fail(f"no upstream output from tool {tool!r} (have: {sorted(self.by_tool)})")
        return self.by_tool[tool]

    def m(self, tool: str, key: str) -> float:
        """One metric of one tool's output."""
        return metric(self.get(tool), key)

    def kloc(self) -> float:
        """Thousands of lines of source code, the denominator of every density."""
        # Floor at half a kLOC so a ten-line project is not judged on one issue's density.
        return max(self.m("inventory", "source_code_lines") / 1000.0, 0.5)


def capped(tool: str, points: float, cap: float) -> Check:
    """A check that costs ``points``, clamped to ``0..cap``."""
    return Check(tool, round(min(max(points, 0.0), cap), 1), cap)


def quality(t: Tools) -> list[Check]:
    """Lint issues and type errors per kLOC, unformatted files, dead code."""
    k = t.kloc()
    dead = 0.5 * t.m("vulture", "items") / k + 2.0 * t.m("vulture", "high_confidence")
    return [
        capped("ruff", 2.0 * t.m("ruff", "issues") / k, 30),
        capped("ruff format", 2.0 * t.m("ruff format", "files_to_reformat"), 10),
        capped("mypy", 3.0 * t.m("mypy", "errors") / k, 30),
        capped("vulture", dead, 15),
    ]


def risk(t: Tools) -> list[Check]:
    """Security issues by severity, complex functions, hard-to-maintain files, loose pins."""
    sec = 10 * t.m("bandit", "high") + 4 * t.m("bandit", "medium") + 0.5 * t.m("bandit", "low")
    cc = t.get("radon cc")
    ranks = as_dict(as_dict(cc.get("metrics", {}), "metrics").get("ranks", {}), "ranks")
    worst = sum(
        as_float(ranks.get(r, 0), f"ranks.{r}") * w for r, w in (("D", 1), ("E", 3), ("F", 3))
    )
    share_over_10 = t.m("radon cc", "over_10") / max(t.m("radon cc", "blocks"), 1.0)
    mi = 3 * t.m("radon mi", "rank_b") + 8 * t.m("radon mi", "rank_c")
    unpinned_other = t.m("deps", "unpinned") - t.m("deps", "unpinned_runtime")
    deps = 3 * t.m("deps", "unpinned_runtime") + unpinned_other + 3 * t.m("deps", "conflicts")
    return [
        capped("bandit", sec, 40),
        capped("radon cc", 100 * share_over_10 + worst, 25),
        capped("radon mi", mi, 20),
        capped("deps", deps, 15),
    ]


def docs(t: Tools) -> list[Check]:
    """Docstring coverage, tests per kLOC (20 is enough), FIXME-style markers."""
    tests_per_kloc = t.m("pytest", "tests") / t.kloc()
    tests = max(0.0, (20.0 - tests_per_kloc) * 1.5) + 10 * t.m("pytest", "collection_errors")
    todo = t.get("todo-scan")
    tags = as_dict(as_dict(todo.get("metrics", {}), "metrics").get("by_tag", {}), "by_tag")
    serious = sum(as_float(tags.get(tag, 0), tag) for tag in ("FIXME", "XXX", "HACK"))
    todos = 2 * serious + 0.5 * as_float(tags.get("TODO", 0), "TODO")
    return [
        capped("interrogate", 0.4 * (100.0 - t.m("interrogate", "coverage_pct")), 40),
        capped("pytest", tests, 30),
        capped("todo-scan", todos, 10),
    ]


AREAS: dict[str, tuple[str, Callable[[Tools], list[Check]]]] = {
    "quality": ("Code quality", quality),
    "risk": ("Risk", risk),
    "docs": ("Documentation and tests", docs),
}


def grade(score: float) -> str:
    """Letter grade: A from 90, B from 80, C from 70, D from 60, else F."""
    for letter, floor in (("A", 90), ("B", 80), ("C", 70), ("D", 60)):
        if score >= floor:
            return letter
    return "F"


def summarize(area: str, tools: Tools) -> dict[str, object]:
    """The area's score, grade, per-check costs and most severe findings."""
    title, scorer = AREAS[area]
    checks = scorer(tools)
    score = round(max(0.0, 100.0 - sum(c.points for c in checks)), 1)
    findings: list[Finding] = []
    rows: list[dict[str, object]] = []
    for c in checks:
        out = tools.get(c.tool)
        findings += parse_findings(out.get("findings", []), f"{c.tool}.findings")
        summary = str(out.get("summary", ""))
        rows.append({"tool": c.tool, "summary": summary, "points": c.points, "cap": c.cap})
    costly = sorted((c for c in checks if c.points > 0), key=lambda c: -c.points)
    return {
        "area": area,
        "title": title,
        "score": score,
        "grade": grade(score),
        "headline": ", ".join(f"{c.tool} -{c.points:g}" for c in costly[:3]) or "no points lost",
        "checks": rows,
        "findings": top_findings(findings, AREA_FINDINGS),
        "findings_total": sum(findings_total(tools.get(c.tool)) for c in checks),
    }


def findings_total(output: dict[str, object]) -> int:
    """How many findings a tool had before its list was capped."""
    value = output.get("findings_total", 0)
    return value if isinstance(value, int) else 0


def main() -> None:
    """Score the area named on the command line from the upstream outputs."""
    area = sys.argv[1] if len(sys.argv) > 1 else ""
    if area not in AREAS:
        fail(f"usage: summarize.py AREA, with AREA one of {sorted(AREAS)}; got {area!r}")
    emit(summarize(area, Tools(read_attempt())))


if __name__ == "__main__":
    main()
