"""Security agent: ``bandit`` over the source files (tests are left out: asserts are their job)."""

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

SEVERITIES: dict[str, Severity] = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low"}


def parse(report: dict[str, object], root: Path) -> list[Finding]:
    """One finding per issue, and one per file bandit could not scan (``scan-error``)."""
    findings: list[Finding] = []
    for i, item in enumerate(as_list(report.get("results", []), "bandit results")):
        d = as_dict(item, f"bandit results[{i}]")
        sev = SEVERITIES.get(str(d.get("issue_severity", "")).upper(), "info")
        file = relative(str(d.get("filename", "")), root)
        code = f"{d.get('test_id', '?')}:{d.get('test_name', '')}"
        message = f"{d.get('issue_text', '')} (confidence {d.get('issue_confidence', '?')})"
        line = as_int(d.get("line_number", 0), "line_number")
        findings.append(finding("bandit", file, line, code, message, sev))
    for err in as_list(report.get("errors", []), "bandit errors"):
        e = as_dict(err, "bandit error")
        file = relative(str(e.get("filename", "")), root)
        findings.append(finding("bandit", file, 0, "scan-error", str(e.get("reason")), "medium"))
    return findings


def main() -> None:
    """Scan the attempt's source files and print the result."""
    attempt = read_attempt()
    files = attempt.files(tests=False)
    report: dict[str, object] = {}
    if files:
        # Status 1 means "issues found".
        raw = run_json("bandit", ["-f", "json", "-q", *files], cwd=attempt.workdir, ok_codes=(0, 1))
        report = as_dict(raw, "bandit report")
    findings = parse(report, attempt.workdir)
    counts = Counter(f["severity"] for f in findings if f["code"] != "scan-error")
    metrics = {
        "files_scanned": len(files),
        "high": counts["high"],
        "medium": counts["medium"],
        "low": counts["low"],
        "scan_errors": sum(1 for f in findings if f["code"] == "scan-error"),
    }
    summary = (
        f"{counts['high']} high, {counts['medium']} medium, {counts['low']} low severity issues "
        f"in {len(files)} source files"
    )
    emit(result("bandit", summary, metrics, findings))


if __name__ == "__main__":
    main()
