"""Maintainability agent: the maintainability index of every source file (``radon mi``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from _common import (
    Finding,
    Severity,
    as_dict,
    as_float,
    emit,
    finding,
    read_attempt,
    relative,
    result,
    run_json,
)

if TYPE_CHECKING:
    from pathlib import Path

# radon mi ranks: A 20-100 (fine), B 10-19 (moderate), C 0-9 (hard to maintain).
RANK_SEVERITY: dict[str, Severity] = {"B": "medium", "C": "high"}


def parse(raw: object, root: Path) -> tuple[dict[str, float], list[Finding]]:
    """Each file's index, and findings for files ranked B or C or that radon cannot parse."""
    per_file: dict[str, float] = {}
    findings: list[Finding] = []
    for path, entry in as_dict(raw, "radon mi report").items():
        file = relative(path, root)
        d = as_dict(entry, f"radon mi {path}")
        if "error" in d:
            findings.append(finding("radon mi", file, 0, "parse-error", str(d["error"]), "medium"))
            continue
        mi = per_file[file] = round(as_float(d.get("mi"), f"radon mi {path}"), 1)
        rank = str(d.get("rank", "A"))
        if rank in RANK_SEVERITY:
            message = f"maintainability index {mi} (rank {rank})"
            findings.append(
                finding("radon mi", file, 1, f"mi-{rank}", message, RANK_SEVERITY[rank])
            )
    return per_file, findings


def main() -> None:
    """Measure the maintainability of the attempt's source files and print the result."""
    attempt = read_attempt()
    files = attempt.files(tests=False)
    raw = run_json("radon", ["mi", "-j", *files], cwd=attempt.workdir, empty="{}") if files else {}
    per_file, findings = parse(raw, attempt.workdir)
    values = sorted(per_file.values())
    average = round(sum(values) / len(values), 1) if values else 0.0
    metrics = {
        "files": len(values),
        "average": average,
        "min": values[0] if values else 0.0,
        "rank_b": sum(1 for f in findings if f["code"] == "mi-B"),
        "rank_c": sum(1 for f in findings if f["code"] == "mi-C"),
        "lowest": dict(sorted(per_file.items(), key=lambda kv: kv[1])[:5]),
    }
    summary = f"average maintainability index {average} over {len(values)} files"
    emit(result("radon mi", summary, metrics, findings))


if __name__ == "__main__":
    main()
