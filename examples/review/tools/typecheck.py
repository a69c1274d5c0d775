"""Type agent: ``mypy`` over the tree's packages, honouring the project's mypy configuration.

Targets are the top-level packages and modules the inventory found (tests excluded), unless the
task's ``input.targets`` names them. ``input.strict: true`` adds ``--strict``. The mypy cache is
kept outside the reviewed tree, so a review never writes into the code it reviews.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from pathlib import Path

from _common import (
    Attempt,
    Finding,
    as_dict,
    as_int,
    as_list,
    emit,
    fail,
    finding,
    read_attempt,
    relative,
    result,
    run_tool,
)


def targets_for(attempt: Attempt) -> list[str]:
    """``input.targets``, else the top-level packages and modules (the inventory's, if given)."""
    if "targets" in attempt.input:
        return [str(t) for t in as_list(attempt.input["targets"], "input.targets")]
    inventory = attempt.upstream.get("inventory")
    if isinstance(inventory, dict):
        inv = as_dict(inventory, "inventory")
        pkgs = as_list(inv.get("python_packages", []), "inventory.python_packages")
        mods = as_list(inv.get("top_level_modules", []), "inventory.top_level_modules")
        return [str(t) for t in (*pkgs, *mods)]
    return importable(attempt.workdir, attempt.files(tests=False))


def importable(root: Path, files: list[str]) -> list[str]:
    """Top-level packages (directories with ``__init__.py``) and top-level modules."""
    tops = sorted({f.split("/", 1)[0] for f in files if "/" in f})
    return [p for p in tops if (root / p / "__init__.py").is_file()] + [
        f for f in files if "/" not in f
    ]


def parse(stdout: str, root: Path) -> list[Finding]:
    """One finding per error among mypy's JSON lines (notes are context, not findings)."""
    findings: list[Finding] = []
    for line in stdout.splitlines():
        try:
            item: object = json.loads(line)
        except ValueError:
            continue  # mypy may print plain lines ("Success: ...") around the JSON ones
        d = as_dict(item, "mypy message")
        if d.get("severity") == "error":
            file = relative(str(d.get("file", "")), root)
            line_no = as_int(d.get("line", 0), "mypy line")
            code = str(d.get("code") or "error")
            findings.append(finding("mypy", file, line_no, code, str(d.get("message")), "medium"))
    return findings


def main() -> None:
    """Type-check the attempt's packages and print the result."""
    attempt = read_attempt()
    root = attempt.workdir
    targets = targets_for(attempt)
    findings: list[Finding] = []
    if targets:
        key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        cache = Path(tempfile.gettempdir()) / "metaagent-review" / "mypy" / key
        args = ["-O", "json", "--no-error-summary", "--cache-dir", str(cache)]
        args += ["--strict"] if attempt.input.get("strict") is True else []
        # 1 means "type errors found"; 2 is a crash, bad config, or a syntax error (still JSON).
        done = run_tool("mypy", [*args, *targets], cwd=root, ok_codes=(0, 1, 2))
        findings = parse(done.stdout, root)
        if done.returncode == 2 and not findings:
            fail(f"mypy could not check {targets}: {(done.stderr or done.stdout).strip()[-800:]}")
    files_with_errors = len({f["file"] for f in findings})
    metrics = {
        "targets": len(targets),
        "errors": len(findings),
        "files_with_errors": files_with_errors,
        "by_code": dict(Counter(f["code"] for f in findings).most_common(10)),
    }
    checked = ", ".join(targets) or "nothing"
    found = (
        f"{len(findings)} type errors in {files_with_errors} files"
        if findings
        else "no type errors"
    )
    summary = f"{found} (checked: {checked})"
    out = result("mypy", summary, metrics, findings)
    out["checked"] = targets
    emit(out)


if __name__ == "__main__":
    main()
