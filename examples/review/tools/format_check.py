"""Format agent: ``ruff format --check``, listing the files the formatter would rewrite."""

from __future__ import annotations

from typing import TYPE_CHECKING

from _common import (
    Finding,
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


def parse(raw: object, root: Path) -> list[Finding]:
    """One finding per file to reformat, and one per file ruff could not parse."""
    findings: list[Finding] = []
    for i, item in enumerate(as_list(raw, "ruff format output")):
        d = as_dict(item, f"ruff format output[{i}]")
        file = relative(str(d.get("filename", "")), root)
        row = as_int(as_dict(d.get("location") or {}, "location").get("row", 1), "row")
        if d.get("code") == "unformatted":
            message = f"would be reformatted (first change at line {row})"
            findings.append(finding("ruff format", file, row, "format", message, "low"))
        else:
            message = f"cannot format: {d.get('message', '')}"
            code = str(d.get("code") or "error")
            findings.append(finding("ruff format", file, row, code, message, "medium"))
    return findings


def main() -> None:
    """Check the formatting of the attempt's files and print the result."""
    attempt = read_attempt()
    files = attempt.files()
    args = ["format", "--check", "--no-cache", "--output-format", "json", *files]
    # 1 means "some files would be reformatted"; 2 "some could not be parsed" (still JSON).
    raw = run_json("ruff", args, cwd=attempt.workdir, ok_codes=(0, 1, 2)) if files else []
    findings = parse(raw, attempt.workdir)
    unformatted = sum(1 for f in findings if f["code"] == "format")
    metrics = {
        "files_checked": len(files),
        "files_to_reformat": unformatted,
        "unparsable": len(findings) - unformatted,
    }
    summary = f"{unformatted} of {len(files)} files would be reformatted"
    emit(result("ruff format", summary, metrics, findings))


if __name__ == "__main__":
    main()
