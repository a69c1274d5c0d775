"""Backlog agent: TODO, FIXME, XXX and HACK markers in comments (pure Python, via tokenize).

Only comments count: a marker inside a string is data, not a note to self.
"""

from __future__ import annotations

import re
import tokenize
from collections import Counter
from typing import TYPE_CHECKING

from _common import Finding, Severity, emit, finding, read_attempt, result

if TYPE_CHECKING:
    from pathlib import Path

MARKER = re.compile(r"\b(TODO|FIXME|XXX|HACK)\b[:\s]*(.*)")


def scan(path: Path, rel: str) -> tuple[list[Finding], bool]:
    """The markers in one file's comments, and whether the whole file could be read."""
    tokens: list[tokenize.TokenInfo] = []
    complete = True
    try:
        with tokenize.open(path) as fh:
            tokens.extend(tokenize.generate_tokens(fh.readline))
    except (OSError, SyntaxError, UnicodeDecodeError, tokenize.TokenError):
        complete = False  # the comments read before the error still count
    found: list[Finding] = []
    for tok in tokens:
        if tok.type == tokenize.COMMENT and (m := MARKER.search(tok.string)) is not None:
            sev: Severity = "info" if m.group(1) == "TODO" else "low"
            text = m.group(2).strip() or "(no text)"
            found.append(finding("todo-scan", rel, tok.start[0], m.group(1), text, sev))
    return found, complete


def main() -> None:
    """Scan the attempt's files for markers and print the result."""
    attempt = read_attempt()
    files = attempt.files()
    findings: list[Finding] = []
    unreadable = 0
    for rel in files:
        found, complete = scan(attempt.workdir / rel, rel)
        findings += found
        unreadable += not complete
    by_tag = Counter(f["code"] for f in findings)
    metrics = {
        "files_scanned": len(files),
        "markers": len(findings),
        "by_tag": {t: by_tag[t] for t in ("TODO", "FIXME", "XXX", "HACK")},
        "unreadable_files": unreadable,
    }
    summary = f"{len(findings)} TODO/FIXME markers in {len({f['file'] for f in findings})} files"
    emit(result("todo-scan", summary, metrics, findings))


if __name__ == "__main__":
    main()
