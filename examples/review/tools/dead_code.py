"""Dead-code agent: unused functions, classes, variables and imports (``vulture``).

All files are given, tests included, so that code used only by tests does not count as dead.
``input.min_confidence`` (default 60) filters the guesses.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from _common import (
    Finding,
    Severity,
    as_int,
    emit,
    fail,
    finding,
    read_attempt,
    relative,
    result,
    run_tool,
)

if TYPE_CHECKING:
    from pathlib import Path

LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<what>.+) \((?P<conf>\d+)% confidence")
KIND = re.compile(r"^(unused \w+|unreachable code|redundant if-condition)")


def parse(stdout: str, root: Path) -> list[Finding]:
    """One finding per line of vulture's report; an unknown line is an error."""
    findings: list[Finding] = []
    for raw in stdout.splitlines():
        if (m := LINE.match(raw)) is None:
            fail(f"cannot parse vulture output line: {raw!r}")
        conf = int(m["conf"])
        kind = KIND.match(m["what"])
        code = kind.group(1).replace(" ", "-") if kind else "dead-code"
        sev: Severity = "medium" if conf >= 90 else "low"
        message = f"{m['what']} ({conf}% confidence)"
        findings.append(
            finding("vulture", relative(m["file"], root), int(m["line"]), code, message, sev)
        )
    return findings


def main() -> None:
    """Look for dead code in the attempt's files and print the result."""
    attempt = read_attempt()
    files = attempt.files()
    min_conf = as_int(attempt.input.get("min_confidence", 60), "input.min_confidence")
    findings: list[Finding] = []
    if files:
        # 3 means "dead code found", 1 "some input was invalid" (a syntax error: still reported).
        args = ["--min-confidence", str(min_conf), *files]
        done = run_tool("vulture", args, cwd=attempt.workdir, ok_codes=(0, 1, 3))
        findings = parse(done.stdout, attempt.workdir)
        if done.returncode == 1:
            for err in done.stderr.strip().splitlines()[-5:]:
                findings.append(finding("vulture", "", 0, "invalid-input", err, "medium"))
    metrics = {
        "files_checked": len(files),
        "items": len(findings),
        "high_confidence": sum(1 for f in findings if f["severity"] == "medium"),
        "by_kind": dict(Counter(f["code"] for f in findings).most_common()),
        "min_confidence": min_conf,
    }
    summary = f"{len(findings)} possibly unused items (confidence >= {min_conf}%)"
    emit(result("vulture", summary, metrics, findings))


if __name__ == "__main__":
    main()
