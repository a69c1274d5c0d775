"""Complexity agent: cyclomatic complexity of every function and method (``radon cc``)."""

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

# radon ranks: A 1-5, B 6-10, C 11-20, D 21-30, E 31-40, F 41+.
RANK_SEVERITY: dict[str, Severity] = {"C": "low", "D": "medium", "E": "high", "F": "high"}


def block_finding(file: str, b: dict[str, object]) -> Finding | None:
    """A finding for a block of rank C or worse, else ``None``."""
    rank = str(b.get("rank", "?"))
    if rank not in RANK_SEVERITY:
        return None
    owner = f"{b['classname']}." if b.get("classname") else ""
    message = (
        f"{owner}{b.get('name', '?')} has cyclomatic complexity {b.get('complexity')} (rank {rank})"
    )
    line = as_int(b.get("lineno", 0), "lineno")
    return finding("radon cc", file, line, f"cc-{rank}", message, RANK_SEVERITY[rank])


def parse(raw: object, root: Path) -> tuple[list[int], Counter[str], list[Finding]]:
    """Every function's complexity, the count per rank, and findings for the complex ones."""
    scores: list[int] = []
    ranks = Counter[str]()
    findings: list[Finding] = []
    for path, blocks in as_dict(raw, "radon cc report").items():
        file = relative(path, root)
        if isinstance(blocks, dict):  # a file radon cannot parse: {"error": ...}
            why = str(blocks.get("error", blocks))
            findings.append(finding("radon cc", file, 0, "parse-error", why, "medium"))
            continue
        # Classes list their methods and radon repeats them at top level: count those once.
        for item in as_list(blocks, f"radon cc {path}"):
            b = as_dict(item, f"radon cc block in {path}")
            if b.get("type") == "class":
                continue
            scores.append(as_int(b.get("complexity", 0), "complexity"))
            ranks[str(b.get("rank", "?"))] += 1
            if (f := block_finding(file, b)) is not None:
                findings.append(f)
    return scores, ranks, findings


def main() -> None:
    """Measure the complexity of the attempt's source files and print the result."""
    attempt = read_attempt()
    files = attempt.files(tests=False)
    raw = run_json("radon", ["cc", "-j", *files], cwd=attempt.workdir, empty="{}") if files else {}
    scores, ranks, findings = parse(raw, attempt.workdir)
    average = round(sum(scores) / len(scores), 2) if scores else 0.0
    over_10 = sum(1 for s in scores if s > 10)
    metrics = {
        "blocks": len(scores),
        "average": average,
        "max": max(scores, default=0),
        "ranks": {r: ranks[r] for r in "ABCDEF"},
        "over_10": over_10,
    }
    summary = (
        f"{len(scores)} functions, average complexity {average}, "
        f"{over_10} above 10 (max {metrics['max']})"
    )
    emit(result("radon cc", summary, metrics, findings))


if __name__ == "__main__":
    main()
