"""Docstring agent: documentation coverage of modules, classes and functions (``interrogate``).

Source files only; ``__init__`` methods, magic methods and nested functions are not counted.
interrogate has no machine-readable output, so its ``-vv`` tables are parsed, strictly.
"""

from __future__ import annotations

import ast
import os
import re
from typing import TYPE_CHECKING

from _common import Finding, Severity, emit, fail, finding, read_attempt, result, run_tool

if TYPE_CHECKING:
    from pathlib import Path

ROW = re.compile(r"^\| (?P<name>.+?) +\| +(?P<status>COVERED|MISSED) +\|$")
TOTAL = re.compile(r"^\| TOTAL +\| +(?P<total>\d+) +\| +(?P<miss>\d+) +\| +\d+ +\| +[\d.]+% +\|$")
ITEM = re.compile(r"^(?P<name>.+) \(L(?P<line>\d+)\)$")
FLAGS = ["-vv", "--no-color", "--fail-under", "0"]
IGNORE = ["--ignore-init-method", "--ignore-magic", "--ignore-nested-functions"]
WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}  # so that no table cell is wrapped or truncated


def parse(stdout: str, base: str) -> tuple[int, int, list[Finding]]:
    """Items counted, items missing a docstring, and one finding per missing docstring."""
    current = ""
    totals = None
    findings: list[Finding] = []
    for line in stdout.splitlines():
        if (t := TOTAL.match(line)) is not None:
            totals = t
        elif (row := ROW.match(line)) is None:
            continue
        elif row["name"].endswith(" (module)"):
            current = os.path.join(base, row["name"].removesuffix(" (module)"))
            if row["status"] == "MISSED":
                message = "module has no docstring"
                findings.append(finding("interrogate", current, 1, "module", message, "low"))
        elif row["status"] == "MISSED" and (item := ITEM.match(row["name"])) is not None:
            private = item["name"].rsplit(".", 1)[-1].startswith("_")
            sev: Severity = "info" if private else "low"
            message = f"{item['name']} has no docstring"
            line_no = int(item["line"])
            findings.append(finding("interrogate", current, line_no, "item", message, sev))
    if totals is None:
        fail(f"no TOTAL row in interrogate's output: {stdout[-500:]!r}")
    return int(totals["total"]), int(totals["miss"]), findings


def parses(path: Path) -> str | None:
    """Why ``path`` is not valid Python (interrogate crashes on such a file), or ``None``."""
    try:
        ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError) as exc:
        return str(exc)
    return None


def main() -> None:
    """Measure the docstring coverage of the attempt's source files and print the result."""
    attempt = read_attempt()
    findings: list[Finding] = []
    files: list[str] = []
    for rel in attempt.files(tests=False):
        if (why := parses(attempt.workdir / rel)) is None:
            files.append(rel)
        else:
            findings.append(finding("interrogate", rel, 0, "syntax-error", why, "medium"))
    total = missing = 0
    if files:
        # interrogate names files relative to the common directory of its arguments.
        base = os.path.commonpath([os.path.dirname(f) or "." for f in files])
        base = "" if base == "." else base
        done = run_tool("interrogate", [*FLAGS, *IGNORE, *files], cwd=attempt.workdir, env=WIDE)
        total, missing, found = parse(done.stdout, base)
        findings += found
    pct = round(100.0 * (total - missing) / total, 1) if total else 100.0
    metrics = {"files": len(files), "items": total, "missing": missing, "coverage_pct": pct}
    summary = f"docstring coverage {pct}% ({missing} of {total} items undocumented)"
    emit(result("interrogate", summary, metrics, findings))


if __name__ == "__main__":
    main()
