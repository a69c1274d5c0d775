"""The review demo's tool agents, run as real subprocesses on a small tree made for each test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "examples" / "review" / "tools"

CORE = '''"""Core helpers."""

import os
import subprocess


def documented(cmd: str) -> int:
    """Run a command."""
    # TODO: stop using the shell
    return subprocess.call(cmd, shell=True)


def undocumented() -> str:
    # FIXME remove this
    return "TODO: a marker in a string is data, not a note"
'''

PYPROJECT = """[project]
name = "demo"
dependencies = ["requests>=2", "rich==13.0", "click<9"]

[project.optional-dependencies]
dev = ["pytest", "demo[docs]"]

[tool.ruff.lint]
select = ["F"]
"""


def run(
    script: str,
    workdir: Path,
    upstream: dict[str, object] | None = None,
    task_input: object = None,
    *args: str,
) -> dict[str, object]:
    """Run one tool the way metaagent does: attempt JSON on stdin, one JSON object out."""
    attempt = {
        "id": script,
        "run_id": "run-test",
        "workdir": str(workdir),
        "upstream": upstream or {},
        "input": task_input,
    }
    done = subprocess.run(
        [sys.executable, str(TOOLS / script), *args],
        input=json.dumps(attempt),
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert isinstance(out, dict)
    return out


def findings(out: dict[str, object]) -> list[dict[str, object]]:
    value = out["findings"]
    assert isinstance(value, list)
    return [f for f in value if isinstance(f, dict)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""The demo package."""\n')
    (tmp_path / "pkg" / "core.py").write_text(CORE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_core.py").write_text("def test_one():\n    assert True\n")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / ".venv" / "lib").mkdir(parents=True)  # never reviewed
    (tmp_path / ".venv" / "lib" / "junk.py").write_text("import os\n")
    return tmp_path


def test_inventory_then_lint_find_the_one_unused_import(tree: Path) -> None:
    inv = run("inventory.py", tree)
    assert inv["files"] == ["pkg/__init__.py", "pkg/core.py", "tests/test_core.py"]
    assert inv["source_files"] == ["pkg/__init__.py", "pkg/core.py"]
    assert inv["python_packages"] == ["pkg"]
    assert inv["project"] == "demo"
    metrics = inv["metrics"]
    assert isinstance(metrics, dict)
    assert (metrics["files"], metrics["test_files"], metrics["code_lines"]) == (3, 1, 11)

    lint = run("lint.py", tree, {"inventory": inv})
    assert lint["metrics"] == {
        "files_checked": 3,
        "issues": 1,
        "fixable": 1,
        "files_with_issues": 1,
        "by_rule": {"F401": 1},
    }
    [finding] = findings(lint)
    assert (finding["file"], finding["line"], finding["severity"]) == ("pkg/core.py", 3, "medium")


def test_docstrings_counts_the_one_undocumented_function(tree: Path) -> None:
    out = run("docstrings.py", tree)
    assert out["metrics"] == {"files": 2, "items": 4, "missing": 1, "coverage_pct": 75.0}
    [finding] = findings(out)
    assert finding["file"] == "pkg/core.py"
    assert finding["line"] == 13
    assert finding["message"] == "undocumented has no docstring"


def test_todos_counts_comments_not_strings(tree: Path) -> None:
    out = run("todos.py", tree)
    metrics = out["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["markers"] == 2
    assert metrics["by_tag"] == {"TODO": 1, "FIXME": 1, "XXX": 0, "HACK": 0}
    assert [(f["line"], f["code"]) for f in findings(out)] == [(14, "FIXME"), (9, "TODO")]


def test_dependencies_tells_pinned_bounded_and_unpinned_apart(tree: Path) -> None:
    out = run("dependencies.py", tree)
    assert out["metrics"] == {
        "requirements": 4,  # the self-reference demo[docs] is not a dependency
        "pinned": 1,
        "bounded": 1,
        "unpinned": 2,
        "direct-url": 0,
        "unpinned_runtime": 1,
        "conflicts": 0,
    }


def _area(
    area: str, title: str, score: float, grade: str, finding: dict[str, object]
) -> dict[str, object]:
    return {
        "area": area,
        "title": title,
        "score": score,
        "grade": grade,
        "headline": f"{finding['tool']} -{100 - score:g}",
        "checks": [
            {"tool": finding["tool"], "summary": "1 | 2 issues", "points": 100 - score, "cap": 40}
        ],
        "findings": [finding],
        "findings_total": 7,
    }


def test_report_renders_markdown_from_fixed_upstream(tmp_path: Path) -> None:
    lint = {
        "tool": "ruff",
        "file": "pkg/core.py",
        "line": 3,
        "code": "F401",
        "message": "`os` imported but unused",
        "severity": "medium",
    }
    shell = {
        "tool": "bandit",
        "file": "pkg/core.py",
        "line": 10,
        "code": "B602",
        "message": "shell=True | risky",
        "severity": "high",
    }
    upstream: dict[str, object] = {
        "inventory": {
            "tool": "inventory",
            "project": "demo",
            "metrics": {"files": 3, "code_lines": 120},
            "by_package": {"pkg": {"files": 2, "lines": 130, "code_lines": 100}},
        },
        "risk_summary": _area("risk", "Risk", 70, "C", shell),
        "quality_summary": _area("quality", "Code quality", 90, "A", lint),
    }
    out = run("report.py", tmp_path, upstream, {"report_path": "reports/r.md"})
    report = tmp_path / "reports" / "r.md"
    assert out["report_path"] == str(report)
    assert (out["score"], out["grade"]) == (80, "B")
    assert out["areas"] == {
        "quality": {"score": 90, "grade": "A"},
        "risk": {"score": 70, "grade": "C"},
    }
    text = report.read_text()
    assert text.startswith("# Code review: demo\n")
    assert "**Overall grade: B (80/100)** · 3 Python files, 120 lines of code" in text
    # Areas in a fixed order (quality before risk), whatever order upstream came in.
    assert text.index("| Code quality | 90 | A | ruff -10 |") < text.index(
        "| Risk | 70 | C | bandit -30 |"
    )
    assert "| `pkg` | 2 | 100 |" in text
    assert "| bandit | 1 \\| 2 issues | 30 / 40 |" in text
    assert "## Top findings (2 most severe of 14)" in text
    rows = [ln for ln in text.splitlines() if ln.startswith(("| 1 |", "| 2 |"))]
    assert rows == [
        "| 1 | high | bandit | `pkg/core.py:10` | B602: shell=True \\| risky |",
        "| 2 | medium | ruff | `pkg/core.py:3` | F401: `os` imported but unused |",
    ]
    assert "run `run-test`" in text


def _tool(tool: str, **metrics: float) -> dict[str, object]:
    return {"tool": tool, "summary": f"{tool} ran", "metrics": metrics, "findings": []}


def test_quality_summary_scores_from_tool_metrics(tmp_path: Path) -> None:
    upstream: dict[str, object] = {
        "inventory": _tool("inventory", source_code_lines=2000),
        "lint": _tool("ruff", issues=10),  # 2 points per issue per kLOC
        "format": _tool("ruff format", files_to_reformat=1),  # 2 per file
        "types": _tool("mypy", errors=4),  # 3 per error per kLOC
        "dead_code": _tool("vulture", items=8, high_confidence=1),  # 0.5 per item per kLOC + 2
    }
    out = run("summarize.py", tmp_path, upstream, None, "quality")
    assert (out["score"], out["grade"]) == (78, "C")
    assert out["headline"] == "ruff -10, mypy -6, vulture -4"


def test_a_missing_upstream_tool_fails_with_a_clear_message(tmp_path: Path) -> None:
    attempt: dict[str, object] = {
        "id": "risk",
        "workdir": str(tmp_path),
        "upstream": {},
        "input": None,
    }
    done = subprocess.run(
        [sys.executable, str(TOOLS / "summarize.py"), "risk"],
        input=json.dumps(attempt),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no upstream output from tool 'bandit'" in done.stderr
