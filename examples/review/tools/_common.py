"""Shared plumbing for the review demo's tool agents: read the attempt, run a tool, print JSON.

Every tool script reads the attempt JSON metaagent sends on stdin, prints one JSON object on
stdout and exits non-zero only when its tool could not run at all (findings are not failures).
"""

from __future__ import annotations

import json
import os

# Running the review tools is the point of these agents.
import subprocess  # nosec B404
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn, TypedDict, cast

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

Severity = Literal["high", "medium", "low", "info"]
SEVERITY_RANK: dict[str, int] = {"high": 0, "medium": 1, "low": 2, "info": 3}
MAX_FINDINGS = 20
"""Detail lists are capped so that outputs (and the run's journal) stay small."""

EXCLUDED_DIRS = frozenset(
    {"out", "build", "dist", "node_modules", "__pycache__", "site-packages", "venv", "htmlcov"}
)
"""Directory names never reviewed; hidden directories (``.venv``, ``.git``) are skipped too."""


class Finding(TypedDict):
    """One thing a tool found, located in the tree under review."""

    tool: str
    file: str
    line: int
    code: str
    message: str
    severity: Severity


class Attempt:
    """The parts of metaagent's attempt JSON that the tools use."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self.run_id = str(raw.get("run_id", ""))
        self.workdir = Path(str(raw.get("workdir") or ".")).resolve()
        given = raw.get("input")
        self.input: dict[str, object] = as_dict(given, "input") if given is not None else {}
        self.upstream = as_dict(raw.get("upstream") or {}, "upstream")

    def files(self, *, tests: bool = True) -> list[str]:
        """Python files to review, relative to the workdir: from the inventory when present."""
        inv = self.upstream.get("inventory")
        if isinstance(inv, dict):
            key = "files" if tests else "source_files"
            return [str(f) for f in as_list(inv.get(key, []), f"inventory.{key}")]
        return [f for f in python_files(self.workdir) if tests or not is_test_path(f)]


def read_attempt() -> Attempt:
    """Parse the attempt JSON from stdin (an empty stdin means an empty attempt)."""
    text = sys.stdin.read()
    try:
        raw: object = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        fail(f"stdin is not JSON: {exc}")
    return Attempt(as_dict(raw, "attempt"))


def emit(payload: Mapping[str, object]) -> None:
    """Print the task output: one JSON object on stdout."""
    json.dump(payload, sys.stdout, sort_keys=False)
    sys.stdout.write("\n")


def fail(message: str) -> NoReturn:
    """Report that the tool could not run and exit with status 1."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def run_tool(
    module: str,
    args: Sequence[str],
    *,
    cwd: Path,
    ok_codes: Collection[int] = (0,),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` in ``cwd``; exit with an error on an unexpected status."""
    argv = [sys.executable, "-m", module, *args]
    full_env = {**os.environ, **(env or {})}
    try:
        # argv is built here and no shell is involved.
        done = subprocess.run(  # nosec B603
            argv, cwd=cwd, env=full_env, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        fail(f"cannot start {module}: {exc}")
    if done.returncode not in ok_codes:
        detail = (done.stderr.strip() or done.stdout.strip())[-1500:] or "(no output)"
        fail(f"{module} exited with status {done.returncode}: {detail}")
    return done


def run_json(
    module: str,
    args: Sequence[str],
    *,
    cwd: Path,
    ok_codes: Collection[int] = (0,),
    empty: str = "[]",
) -> object:
    """Run a tool that prints JSON and return it parsed (``empty`` when it prints nothing)."""
    done = run_tool(module, args, cwd=cwd, ok_codes=ok_codes)
    try:
        parsed: object = json.loads(done.stdout.strip() or empty)
    except ValueError as exc:
        fail(f"{module} printed something that is not JSON ({exc}): {done.stdout[:300]!r}")
    return parsed


def is_test_path(rel: str) -> bool:
    """Whether a relative path is test code (a tests directory, test_*.py, conftest.py)."""
    parts = Path(rel).parts
    name = parts[-1]
    in_test_dir = any(p in ("tests", "test", "testing") for p in parts[:-1])
    return (
        in_test_dir
        or name.startswith("test_")
        or name.endswith("_test.py")
        or (name == "conftest.py")
    )


def skipped_dir(name: str) -> bool:
    """Whether a directory is left out of the review (hidden, build output, caches)."""
    return name.startswith(".") or name in EXCLUDED_DIRS or name.endswith(".egg-info")


def python_files(root: Path) -> list[str]:
    """All ``.py`` files under ``root``, relative and sorted, outside skipped directories."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not skipped_dir(d))
        base = Path(dirpath).relative_to(root)
        found.extend(str(base / f) for f in filenames if f.endswith(".py"))
    return sorted(found)


def relative(path: str, root: Path) -> str:
    """``path`` relative to ``root`` when it is inside it, else unchanged."""
    p = Path(path)
    if not p.is_absolute():
        return str(Path(os.path.normpath(p)))
    try:
        return str(p.resolve().relative_to(root))
    except ValueError:
        return path


def top_findings(findings: Iterable[Finding], limit: int = MAX_FINDINGS) -> list[Finding]:
    """The ``limit`` most severe findings, in a stable order."""
    ordered = sorted(findings, key=lambda f: (SEVERITY_RANK[f["severity"]], f["file"], f["line"]))
    return ordered[:limit]


def result(
    tool: str, summary: str, metrics: Mapping[str, object], findings: list[Finding]
) -> dict[str, object]:
    """The common output shape: tool, one-line summary, metrics, capped findings."""
    top = top_findings(findings)
    return {
        "tool": tool,
        "summary": summary,
        "metrics": dict(metrics),
        "findings": top,
        "findings_total": len(findings),
        "findings_omitted": len(findings) - len(top),
    }


def finding(
    tool: str, file: str, line: int, code: str, message: str, severity: Severity
) -> Finding:
    """Build a finding (keeps call sites short and keyword-free)."""
    return Finding(
        tool=tool, file=file, line=line, code=code, message=message[:300], severity=severity
    )


def parse_findings(value: object, what: str) -> list[Finding]:
    """Findings from an upstream output, checked field by field."""
    out: list[Finding] = []
    for i, item in enumerate(as_list(value, what)):
        d = as_dict(item, f"{what}[{i}]")
        sev = str(d.get("severity", "info"))
        out.append(
            finding(
                str(d.get("tool", "")),
                str(d.get("file", "")),
                as_int(d.get("line", 0), f"{what}[{i}].line"),
                str(d.get("code", "")),
                str(d.get("message", "")),
                cast("Severity", sev) if sev in SEVERITY_RANK else "info",
            )
        )
    return out


def as_dict(value: object, what: str) -> dict[str, object]:
    """``value`` as a JSON object, or exit with an error naming ``what``."""
    if not isinstance(value, dict):
        fail(f"{what}: expected a JSON object, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def as_list(value: object, what: str) -> list[object]:
    """``value`` as a JSON array, or exit with an error naming ``what``."""
    if not isinstance(value, list):
        fail(f"{what}: expected a JSON array, got {type(value).__name__}")
    return list(value)


def as_int(value: object, what: str) -> int:
    """``value`` as an integer (bools are refused), or exit with an error."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(f"{what}: expected a number, got {value!r}")
    return int(value)


def as_float(value: object, what: str) -> float:
    """``value`` as a float, or exit with an error."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(f"{what}: expected a number, got {value!r}")
    return float(value)


def metric(output: Mapping[str, object], key: str, default: float = 0.0) -> float:
    """A number from an upstream output's ``metrics`` (``default`` when absent)."""
    metrics = as_dict(output.get("metrics", {}), "metrics")
    value = metrics.get(key, default)
    return as_float(value, f"metrics.{key}")
