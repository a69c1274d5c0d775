"""Test-inventory agent: which tests exist, per ``pytest --collect-only`` (nothing is run).

Collection imports the test modules, so import errors and broken fixtures show up here; they
are reported as findings. The suite itself is never run: it may be slow, or be this very demo.
"""

from __future__ import annotations

import re
from collections import Counter

from _common import Finding, emit, fail, finding, read_attempt, result, run_tool

FINAL = re.compile(r"(\d+ tests? collected|no tests collected|\d+/\d+ tests)")
ERROR = re.compile(r"^ERROR (?P<path>\S+)(?: - (?P<why>.*))?$")
ARGS = ["--collect-only", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors"]


def parse(stdout: str) -> tuple[list[str], list[Finding]]:
    """Collected test ids, and one finding per module that failed to collect."""
    lines = stdout.splitlines()
    if not any(FINAL.search(ln) for ln in lines[-5:]):
        fail(f"no collection summary in pytest's output: {stdout[-800:]!r}")
    ids = [ln for ln in lines if "::" in ln and not ln.startswith(("ERROR", " ", "_", "="))]
    findings = [
        finding("pytest", m["path"], 0, "collection-error", m["why"] or "cannot collect", "high")
        for m in map(ERROR.match, lines)
        if m is not None
    ]
    return ids, findings


def main() -> None:
    """Collect the tests of the attempt's tree and print the result."""
    attempt = read_attempt()
    # 1: collected with errors; 5: no tests at all. Anything else is pytest failing to start.
    done = run_tool("pytest", ARGS, cwd=attempt.workdir, ok_codes=(0, 1, 5))
    ids, findings = parse(done.stdout)
    per_file = Counter(i.split("::", 1)[0] for i in ids)
    metrics = {
        "tests": len(ids),
        "test_files": len(per_file),
        "collection_errors": len(findings),
        "by_file": dict(per_file.most_common(10)),
    }
    summary = f"{len(ids)} tests in {len(per_file)} files, {len(findings)} collection errors"
    emit(result("pytest", summary, metrics, findings))


if __name__ == "__main__":
    main()
