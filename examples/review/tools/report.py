"""Report agent: merge the area summaries into one Markdown review report and an overall grade.

Writes the report to ``input.report_path`` (relative to the workdir; default
``out/review-report.md``), creating its directory, and returns where it is, the overall score
and grade, and each area's score.
"""

from __future__ import annotations

from collections import Counter

from _common import (
    SEVERITY_RANK,
    Attempt,
    Finding,
    as_dict,
    as_float,
    as_int,
    as_list,
    emit,
    fail,
    parse_findings,
    read_attempt,
    top_findings,
)
from summarize import grade

DEFAULT_REPORT = "out/review-report.md"
TOP_FINDINGS = 20
AREA_ORDER = {"quality": 0, "risk": 1, "docs": 2}


def cell(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def table(header: list[str], rows: list[list[object]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has one of ``l``, ``r``, ``c`` per column."""
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    aligns = [marks[a] for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def location(f: Finding) -> str:
    """``file:line`` in code style, or ``-`` for a finding about no file in particular."""
    if not f["file"]:
        return "-"
    return f"`{f['file']}:{f['line']}`" if f["line"] > 0 else f"`{f['file']}`"


def spread(findings: list[Finding], limit: int) -> list[Finding]:
    """The most severe findings, taking tools in turn within a severity so no one tool hogs it."""
    turn = Counter[tuple[str, str]]()
    keyed: list[tuple[int, int, str, Finding]] = []
    for f in top_findings(findings, len(findings)):
        keyed.append((SEVERITY_RANK[f["severity"]], turn[f["severity"], f["tool"]], f["tool"], f))
        turn[f["severity"], f["tool"]] += 1
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed[:limit]]


def collect(attempt: Attempt) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The inventory output and the area summaries, in a fixed order."""
    inventory: dict[str, object] = {}
    areas: list[dict[str, object]] = []
    for task_id, out in attempt.upstream.items():
        d = as_dict(out, f"upstream.{task_id}")
        if "area" in d:
            areas.append(d)
        elif d.get("tool") == "inventory":
            inventory = d
    if not areas:
        fail(f"no area summaries upstream (have: {sorted(attempt.upstream)})")
    areas.sort(key=lambda a: AREA_ORDER.get(str(a["area"]), 99))
    return inventory, areas


def overview(
    score: float, inventory: dict[str, object], areas: list[dict[str, object]]
) -> list[str]:
    """The headline grade and the table of areas."""
    inv = as_dict(inventory.get("metrics", {}), "inventory.metrics")
    n_checks = sum(len(as_list(a.get("checks", []), "checks")) for a in areas)
    out = [
        f"**Overall grade: {grade(score)} ({score:g}/100)** · {inv.get('files', '?')} Python "
        f"files, {inv.get('code_lines', '?')} lines of code · {n_checks} checks in "
        f"{len(areas)} areas",
        "",
    ]
    rows: list[list[object]] = [
        [
            a.get("title"),
            f"{as_float(a.get('score'), 'score'):g}",
            a.get("grade"),
            a.get("headline"),
        ]
        for a in areas
    ]
    return out + table(["Area", "Score", "Grade", "Biggest costs"], rows, "lrcl")


def codebase(inventory: dict[str, object]) -> list[str]:
    """Files and lines of code of the ten largest packages (nothing without an inventory)."""
    by_package = as_dict(inventory.get("by_package", {}), "inventory.by_package")
    rows: list[list[object]] = []
    for name, stats in list(by_package.items())[:10]:
        s = as_dict(stats, f"by_package.{name}")
        rows.append([f"`{name}`", s.get("files"), s.get("code_lines")])
    if not rows:
        return []
    return ["", "## Codebase", "", *table(["Package", "Files", "Lines of code"], rows, "lrr")]


def area_section(a: dict[str, object]) -> list[str]:
    """One area: its grade and what each check cost."""
    rows: list[list[object]] = []
    for c in as_list(a.get("checks", []), "checks"):
        d = as_dict(c, "check")
        rows.append([d.get("tool"), d.get("summary"), f"{d.get('points')} / {d.get('cap')}"])
    score = as_float(a.get("score"), "score")
    head = f"## {a.get('title')}: {a.get('grade')} ({score:g}/100)"
    return ["", head, "", *table(["Check", "Result", "Points lost"], rows, "llr")]


def findings_section(top: list[Finding], total: int) -> list[str]:
    """The most severe findings across all areas."""
    out = ["", f"## Top findings ({len(top)} most severe of {total})", ""]
    if not top:
        return [*out, "No findings."]
    rows: list[list[object]] = [
        [i, f["severity"], f["tool"], location(f), f"{f['code']}: {f['message']}"]
        for i, f in enumerate(top, 1)
    ]
    return out + table(["#", "Severity", "Tool", "Location", "Finding"], rows, "rlll")


def render(
    project: str, run_id: str, inventory: dict[str, object], areas: list[dict[str, object]]
) -> tuple[str, float, list[Finding]]:
    """The report's Markdown, the overall score (mean of the areas), and the top findings."""
    score = round(sum(as_float(a.get("score"), "score") for a in areas) / len(areas), 1)
    findings: list[Finding] = []
    for a in areas:
        findings += parse_findings(a.get("findings", []), f"{a['area']}.findings")
    top = spread(findings, TOP_FINDINGS)
    total = sum(as_int(a.get("findings_total", 0), "findings_total") for a in areas)
    out = [f"# Code review: {project}", "", *overview(score, inventory, areas)]
    out += codebase(inventory)
    for a in areas:
        out += area_section(a)
    out += findings_section(top, total)
    out += [
        "",
        "---",
        f"Produced by metaagent (run `{run_id}`): one agent per tool, then one per area.",
    ]
    return "\n".join(out) + "\n", score, top


def main() -> None:
    """Write the report for the upstream area summaries and print where it is."""
    attempt = read_attempt()
    inventory, areas = collect(attempt)
    project = str(inventory.get("project") or attempt.workdir.name)
    run_id = attempt.run_id or "-"
    markdown, score, top = render(project, run_id, inventory, areas)
    rel = str(attempt.input.get("report_path") or DEFAULT_REPORT)
    path = attempt.workdir / rel
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the report to {path}: {exc}")
    emit(
        {
            "report_path": str(path),
            "score": score,
            "grade": grade(score),
            "areas": {
                str(a["area"]): {"score": a.get("score"), "grade": a.get("grade")} for a in areas
            },
            "top_findings": [
                f"{f['severity']}: {f['tool']} {location(f)} {f['message']}" for f in top[:5]
            ],
        }
    )


if __name__ == "__main__":
    main()
