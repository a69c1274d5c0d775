"""Inventory agent: which Python files the tree holds, lines of code per package, test files.

Pure Python. Its file lists are what every other tool agent reviews, so exclusions live in one
place (``_common.skipped_dir``).
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

from _common import Finding, emit, finding, is_test_path, python_files, read_attempt, result

LARGE_FILE_LINES = 500  # modules past this are worth a look (the project's style guide)
TOP_LEVEL = "(top level)"


def count_lines(path: Path) -> tuple[int, int]:
    """Total lines and code lines (not blank, not a comment) of one file."""
    total = code = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            total += 1
            stripped = line.strip()
            code += bool(stripped) and not stripped.startswith("#")
    return total, code


def project_name(root: Path) -> str:
    """The project's name from ``pyproject.toml``, else the directory's name."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return root.name
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) and name else root.name


def measure(
    root: Path, files: list[str]
) -> tuple[Counter[str], dict[str, Counter[str]], list[Finding]]:
    """Totals, per-package counts (by first path component) and large-module findings."""
    totals = Counter[str]()
    packages: dict[str, Counter[str]] = {}
    findings: list[Finding] = []
    for rel in files:
        total, code = count_lines(root / rel)
        parts = Path(rel).parts
        pkg = packages.setdefault(parts[0] if len(parts) > 1 else TOP_LEVEL, Counter())
        pkg.update(files=1, lines=total, code_lines=code)
        kind = "test" if is_test_path(rel) else "source"
        totals.update({f"{kind}_files": 1, f"{kind}_code_lines": code})
        totals.update(lines=total, code_lines=code)
        if total > LARGE_FILE_LINES:
            message = f"{total} lines; consider splitting the module"
            findings.append(finding("inventory", rel, 1, "large-module", message, "info"))
    return totals, packages, findings


def layout(root: Path, files: list[str]) -> dict[str, list[str]]:
    """The file lists the other agents review, and the importable top-level names (for mypy)."""
    sources: list[str] = []
    tests: list[str] = []
    for f in files:
        (tests if is_test_path(f) else sources).append(f)
    tops = {f.split("/", 1)[0] for f in sources if "/" in f}
    return {
        "files": files,
        "source_files": sources,
        "test_files": tests,
        "python_packages": sorted(p for p in tops if (root / p / "__init__.py").is_file()),
        "top_level_modules": [f for f in sources if "/" not in f],
    }


def main() -> None:
    """Map the attempt's tree and print the inventory."""
    attempt = read_attempt()
    root = attempt.workdir
    files = python_files(root)
    totals, packages, findings = measure(root, files)
    keys = (
        "lines",
        "code_lines",
        "source_files",
        "source_code_lines",
        "test_files",
        "test_code_lines",
    )
    metrics = {"files": len(files), **{k: totals[k] for k in keys}, "packages": len(packages)}
    summary = (
        f"{len(files)} Python files, {totals['code_lines']} lines of code "
        f"in {len(packages)} top-level groups"
    )
    out = result("inventory", summary, metrics, findings)
    out.update(layout(root, files))
    out.update(
        project=project_name(root),
        by_package={
            name: dict(c)
            for name, c in sorted(packages.items(), key=lambda kv: -kv[1]["code_lines"])
        },
    )
    emit(out)


if __name__ == "__main__":
    main()
