"""Guards of the house: the core does no I/O, arrows between layers point down, modules stay
small and functions simple.

Imports are read from the source (``ast``), not by importing, so a guard names the module and
line at fault. An import counts when it runs: at module level or inside a function, but not in an
``if TYPE_CHECKING:`` block (annotations only).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from radon.complexity import cc_visit
from radon.visitors import Class, Function

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "metaagent"

MAX_MODULE_LINES = 500
MAX_COMPLEXITY = 20  # radon's cyclomatic complexity of one function or method

# Modules the pure core may not import at run time: they do I/O, wait, or run things at once.
# ``importlib`` too: an import by name would pass this scan unseen.
CORE_FORBIDDEN = frozenset(
    {
        "asyncio",
        "concurrent",
        "fastapi",
        "http",
        "httpx",
        "importlib",
        "io",
        "multiprocessing",
        "os",
        "pathlib",
        "ray",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "sqlite3",
        "subprocess",
        "threading",
        "time",
        "urllib",
        "uvicorn",
    }
)
CORE_MAY_IMPORT = ("metaagent.core", "metaagent.errors")  # of the package, only these

# Arrows point down: faces (cli, server, mcp) -> runtime -> core; runtime -> backends -> agents
# -> sandbox; runtime -> journal. A module of the layer on the left may not import, at run time,
# any layer on the right.
# fmt: off
ARROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # layer       may not import, at run time
    ("core",      ("runtime", "backends", "agents", "sandbox", "workspace", "journal", "workflow",
                   "catalog", "sim", "report", "cli", "server", "service", "mcp")),
    ("sandbox",   ("runtime", "backends", "agents", "workspace", "journal", "cli", "server",
                   "service", "mcp")),
    ("workspace", ("runtime", "backends", "agents", "sandbox", "journal", "workflow", "cli",
                   "server", "service", "mcp")),
    ("agents",    ("runtime", "backends", "journal", "cli", "server", "service", "mcp")),
    ("backends",  ("runtime", "journal", "cli", "server", "service", "mcp")),
    ("journal",   ("runtime", "backends", "agents", "sandbox", "cli", "server", "service",
                   "mcp")),
    ("runtime",   ("cli", "server", "service", "mcp")),
    ("workflow",  ("cli", "server", "service", "mcp")),
    ("sim",       ("runtime", "cli", "server", "service", "mcp")),
    ("report",    ("cli", "server", "service", "mcp")),
    ("catalog",   ("runtime", "cli", "server", "service", "mcp")),
)
# fmt: on


@dataclass(frozen=True, slots=True)
class Import:
    """One import that runs: the module that makes it, where, and the module it names."""

    source: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    """True if ``dotted`` names a module or package of this repository."""
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _run_time_nodes(other)
            continue
        yield child
        yield from _run_time_nodes(child)


def imports_in(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, module named)`` for each import of ``source`` that runs, relatives resolved.

    ``module`` is the dotted name of the module the source is. ``from pkg import name`` names
    ``pkg.name`` when that is a module of the repository (``from metaagent import errors`` is
    ``metaagent.errors``), else ``pkg`` itself (``from metaagent import AgentTask``).
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in _run_time_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            named = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{named}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else named))
    return found


def run_time_imports(path: Path) -> list[Import]:
    """The imports of the module at ``path`` that run."""
    found = imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")
    return [Import(path, line, target) for line, target in found]


def modules_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def in_layer(target: str, layer: str) -> bool:
    dotted = f"metaagent.{layer}"
    return target == dotted or target.startswith(dotted + ".")


def test_the_scan_sees_what_it_must() -> None:
    """The scanner itself: imports that run are found, ``TYPE_CHECKING`` ones are not."""
    source = (
        "import os, concurrent.futures\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import asyncio\n"
        "else:\n"
        "    import time\n"
        "def f():\n"
        "    import sqlite3\n"
        "from . import graph\n"
        "from .scheduler.config import SchedulerConfig\n"
        "from .. import errors, AgentTask\n"
        "from ..runtime import orchestrator\n"
    )
    assert imports_in(source, "metaagent.core.m") == [
        (1, "os"),
        (1, "concurrent.futures"),
        (2, "typing"),
        (6, "time"),
        (8, "sqlite3"),
        (9, "metaagent.core.graph"),
        (10, "metaagent.core.scheduler.config"),
        (11, "metaagent.errors"),
        (11, "metaagent"),
        (12, "metaagent.runtime.orchestrator"),
    ]
    # In a package's __init__, "." is the package itself.
    assert imports_in("from . import graph", "metaagent.core", is_package=True) == [
        (1, "metaagent.core.graph")
    ]
    graph = run_time_imports(PACKAGE / "core" / "graph.py")
    assert "metaagent.errors" in {i.target for i in graph}
    assert str(graph[0]).startswith("metaagent/core/graph.py:")


# --- (a) the core does no I/O and imports only itself and the errors -------------------------


CORE_MODULES = modules_under(PACKAGE / "core")


def impure(target: str) -> bool:
    """True if the core may not import ``target`` at run time."""
    if target.split(".")[0] in CORE_FORBIDDEN:
        return True
    return target.split(".")[0] == "metaagent" and not any(
        target == allowed or target.startswith(allowed + ".") for allowed in CORE_MAY_IMPORT
    )


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_no_io_and_nothing_above_it(path: Path) -> None:
    bad = [str(i) for i in run_time_imports(path) if impure(i.target)]
    assert bad == [], "the core is pure, yet:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("target", "refused"),
    [
        ("asyncio", True),
        ("concurrent.futures", True),
        ("os.path", True),
        ("http.client", True),
        ("metaagent", True),  # the package root re-exports the runtime
        ("metaagent.clock", True),
        ("metaagent.runtime.orchestrator", True),
        ("metaagent.core_extra", True),
        ("metaagent.errors", False),
        ("metaagent.core.graph", False),
        ("heapq", False),
        ("random", False),
        ("ossaudiodev", False),
    ],
)
def test_what_the_core_may_import(target: str, refused: bool) -> None:
    assert impure(target) is refused


def test_the_core_scan_covers_every_core_module() -> None:
    assert PACKAGE / "core" / "graph.py" in CORE_MODULES
    assert PACKAGE / "core" / "scheduler" / "scheduler.py" in CORE_MODULES


# --- (d) arrows between layers point down -----------------------------------------------------


@pytest.mark.parametrize(("layer", "forbidden"), ARROWS, ids=[layer for layer, _ in ARROWS])
def test_layers_import_only_downwards(layer: str, forbidden: Sequence[str]) -> None:
    bad = [
        str(i)
        for path in modules_under(PACKAGE / layer)
        for i in run_time_imports(path)
        if any(in_layer(i.target, up) for up in forbidden)
    ]
    assert bad == [], f"{layer} may not import {', '.join(forbidden)}:\n" + "\n".join(bad)


def test_no_package_module_imports_the_testing_helpers() -> None:
    bad = [
        str(i)
        for path in modules_under(PACKAGE)
        if path.name != "testing.py"
        for i in run_time_imports(path)
        if i.target == "metaagent.testing"
    ]
    assert bad == []


# --- (b) small modules, (c) simple functions --------------------------------------------------


def test_no_module_is_over_the_line_limit() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in modules_under(PACKAGE)}
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p, n in sorted(sizes.items())
        if n > MAX_MODULE_LINES
    ]
    assert big == [], f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(big)


def _functions(blocks: Sequence[Function | Class], prefix: str = "") -> Iterator[Function]:
    """Every function under radon's blocks, named by its path: methods, closures, nested classes."""
    for block in blocks:
        inner = f"{prefix}{block.name}."
        if isinstance(block, Class):
            yield from _functions(block.methods, inner)
            yield from _functions(block.inner_classes, inner)
        else:
            yield block._replace(name=f"{prefix}{block.name}")
            yield from _functions(block.closures, inner)


def complex_functions(source: str) -> list[tuple[int, str, int]]:
    """``(line, qualified name, complexity)`` of each function above ``MAX_COMPLEXITY``."""
    # cc_visit lists each method twice (alone and in its class): start from the classes only.
    tops = [b for b in cc_visit(source) if isinstance(b, Class) or not b.is_method]
    return sorted(
        (f.lineno, f.name, f.complexity) for f in _functions(tops) if f.complexity > MAX_COMPLEXITY
    )


def test_no_function_is_over_the_complexity_limit() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} {name} (complexity {cc})"
        for path in modules_under(PACKAGE)
        for line, name, cc in complex_functions(path.read_text())
    ]
    assert bad == [], f"functions above complexity {MAX_COMPLEXITY}:\n" + "\n".join(bad)


def test_the_complexity_scan_sees_methods_and_closures() -> None:
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(MAX_COMPLEXITY))
    body = "def f(x):\n" + branches + "    return -1\n"

    def indent(text: str, by: str) -> str:
        return "".join(f"{by}{line}\n" for line in text.splitlines())

    cases = {
        "f": body,
        "A.f": "class A:\n" + indent(body, "    "),
        "A.B.f": "class A:\n    class B:\n" + indent(body, "        "),
        "outer.f": "def outer():\n" + indent(body, "    "),
    }
    for name, source in cases.items():
        assert [n for _, n, _ in complex_functions(source)] == [name], source
    assert complex_functions(body.replace("    if x == 0:\n        return 0\n", "")) == []
