"""Dependency agent: are the project's requirements pinned? (``pyproject.toml``, requirements files)

A requirement is *pinned* (``==``/``===``), *bounded* (has an upper bound: ``<``, ``<=``, ``~=``,
``==x.*``) or *unpinned* (``>=`` or nothing). Unpinned runtime dependencies make builds drift;
the same package pinned to two different versions is a conflict.
"""

from __future__ import annotations

import re
import tomllib
from typing import TYPE_CHECKING

from _common import (
    Finding,
    Severity,
    as_dict,
    as_list,
    emit,
    fail,
    finding,
    read_attempt,
    result,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>.*)$")
OPERATOR = re.compile(r"(===|==|~=|<=|>=|!=|<|>)\s*([^,\s]+)")
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt", "requirements/base.txt")


def classify(spec: str) -> str:
    """``pinned``, ``bounded``, ``unpinned`` or ``direct-url``, for a version specifier."""
    spec = spec.split(";", 1)[0].strip()
    if spec.startswith("@"):
        return "direct-url"
    ops = OPERATOR.findall(spec)
    if any(op in ("==", "===") and not ver.endswith("*") for op, ver in ops):
        return "pinned"
    if any(op in ("<", "<=", "~=") or (op == "==" and ver.endswith("*")) for op, ver in ops):
        return "bounded"
    return "unpinned"


def load_pyproject(root: Path) -> dict[str, object]:
    """The parsed ``pyproject.toml`` (empty when there is none)."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        fail(f"cannot parse pyproject.toml: {exc}")


def pyproject_requirements(data: dict[str, object]) -> Iterator[tuple[str, str]]:
    """(group, requirement) for the runtime, optional and build requirements."""
    project = as_dict(data.get("project", {}), "[project]")
    for req in as_list(project.get("dependencies", []), "project.dependencies"):
        yield "runtime", str(req)
    optional = as_dict(project.get("optional-dependencies", {}), "optional-dependencies")
    for group, reqs in optional.items():
        for req in as_list(reqs, f"optional-dependencies.{group}"):
            yield f"extra:{group}", str(req)
    build = as_dict(data.get("build-system", {}), "[build-system]")
    for req in as_list(build.get("requires", []), "build-system.requires"):
        yield "build", str(req)


def file_requirements(path: Path) -> Iterator[str]:
    """The requirement lines of a requirements file (options and comments skipped)."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        req = line.split("#", 1)[0].strip()
        if req and not req.startswith("-"):
            yield req


def requirements(root: Path, data: dict[str, object]) -> Iterator[tuple[str, str, str]]:
    """(group, requirement, source file) for every declared requirement."""
    for group, req in pyproject_requirements(data):
        yield group, req, "pyproject.toml"
    for name in REQUIREMENT_FILES:
        if (root / name).is_file():
            for req in file_requirements(root / name):
                yield "runtime", req, name


def main() -> None:
    """Check the pins of the attempt's project and print the result."""
    attempt = read_attempt()
    data = load_pyproject(attempt.workdir)
    own = str(as_dict(data.get("project", {}), "[project]").get("name", "")).lower()
    counts = dict.fromkeys(("pinned", "bounded", "unpinned", "direct-url"), 0)
    findings: list[Finding] = []
    pins: dict[str, set[str]] = {}
    unpinned_runtime = 0
    for group, req, source in requirements(attempt.workdir, data):
        m = NAME.match(req)
        if m is None:
            findings.append(finding("deps", source, 0, "unparsed", f"cannot parse {req!r}", "low"))
            continue
        name = m["name"].lower().replace("_", "-")
        if name == own.replace("_", "-"):
            continue  # an extra that pulls in another extra of this very project
        kind = classify(m["spec"])
        counts[kind] += 1
        if kind == "pinned":
            pins.setdefault(name, set()).add(m["spec"].split(";", 1)[0].strip())
        elif kind == "unpinned":
            sev: Severity = "medium" if group == "runtime" else "low"
            unpinned_runtime += group == "runtime"
            message = f"{group} dependency {req!r} is not pinned"
            findings.append(finding("deps", source, 0, "unpinned", message, sev))
    conflicts = {n: sorted(v) for n, v in pins.items() if len(v) > 1}
    for name, specs in conflicts.items():
        message = f"{name} is pinned to different versions: {', '.join(specs)}"
        findings.append(finding("deps", "pyproject.toml", 0, "conflict", message, "medium"))
    total = sum(counts.values())
    metrics = {
        "requirements": total,
        **counts,
        "unpinned_runtime": unpinned_runtime,
        "conflicts": len(conflicts),
    }
    summary = (
        f"{total} requirements: {counts['pinned']} pinned, {counts['bounded']} bounded, "
        f"{counts['unpinned']} unpinned"
    )
    emit(result("deps", summary, metrics, findings))


if __name__ == "__main__":
    main()
