"""Lint agent: ``ruff check`` over the reviewed files, with the project's own ruff settings."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from _common import (
    Finding,
    Severity,
    as_dict,
    as_int,
    as_list,
    emit,
    finding,
    read_attempt,
    relative,
    result,
    run_json,
)

if TYPE_CHECKING:
    from pathlib import Path

# Pyflakes errors, syntax errors and likely bugs outrank style.
SERIOUS_PREFIXES = ("F", "E9", "B", "PLE", "S", "invalid-syntax")


def parse(raw: object, root: Path) -> tuple[list[Finding], int]:
    """Findings from ruff's JSON, and how many of them ruff can fix itself."""
    findings: list[Finding] = []
    fixable = 0
    for i, item in enumerate(as_list(raw, "ruff output")):
        d = as_dict(item, f"ruff output[{i}]")
        code = str(d.get("code") or "invalid-syntax")
        row = as_int(as_dict(d.get("location") or {}, "location").get("row", 0), "row")
        sev: Severity = "medium" if code.startswith(SERIOUS_PREFIXES) else "low"
        file = relative(str(d.get("filename", "")), root)
        findings.append(finding("ruff", file, row, code, str(d.get("message", "")), sev))
        fixable += d.get("fix") is not None
    return findings, fixable


def main() -> None:
    """Lint the attempt's files and print the result."""
    attempt = read_attempt()
    files = attempt.files()
    args = ["check", "--output-format", "json", "--exit-zero", "--no-cache", *files]
    raw = run_json("ruff", args, cwd=attempt.workdir) if files else []
    findings, fixable = parse(raw, attempt.workdir)
    metrics = {
        "files_checked": len(files),
        "issues": len(findings),
        "fixable": fixable,
        "files_with_issues": len({f["file"] for f in findings}),
        "by_rule": dict(Counter(f["code"] for f in findings).most_common(10)),
    }
    summary = f"{len(findings)} lint issues ({fixable} auto-fixable) in {len(files)} files"
    emit(result("ruff", summary, metrics, findings))


if __name__ == "__main__":
    main()
