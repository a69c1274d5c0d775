"""A code block of the README or the docs is a test: every ```python block runs, as written.

Each block runs in a fresh namespace as a script (``__name__ == "__main__"``), with an empty
stdin. It works in a temporary directory, unless it names files of the repository (a string
such as ``"examples/simulate/release.yaml"``): then it runs at the repository root. A block that
is only a fragment is marked on the line before its fence with ``<!-- not-run: reason -->``
and skipped with that reason.
"""

from __future__ import annotations

import ast
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
PYTHON = frozenset({"python", "py", "python3"})
BLOCK_TIMEOUT_S = 10

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block: where its opening fence is, its language and its text."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None  # the reason given by a ``not-run`` comment on the line before

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(text: str, path: Path) -> list[Block]:
    """The fenced code blocks of a markdown text, as CommonMark reads fences.

    A block closes at a fence of the same character at least as long as the one that opened
    it, so a ```` fence may hold ``` lines. An unclosed block runs to the end of the text.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [_unindent(line, indent) for line in lines[i + 1 : end]]
        words = opening["info"].split()
        marker = _NOT_RUN.match(lines[i - 1]) if i > 0 else None
        blocks.append(
            Block(
                path=path,
                line=i + 1,
                language=words[0].lower() if words else "",
                code="\n".join(body) + "\n",
                not_run=marker["reason"] if marker else None,
            )
        )
        i = end + 1
    return blocks


def _unindent(line: str, indent: int) -> str:
    """Drop up to ``indent`` leading spaces: the fence's own indentation, as CommonMark does."""
    stripped = len(line) - len(line.lstrip(" "))
    return line[min(indent, stripped) :]


def python_blocks() -> list[Block]:
    return [
        block
        for path in DOCUMENTS
        for block in code_blocks(path.read_text(), path)
        if block.language in PYTHON
    ]


def names_repository_files(code: str) -> bool:
    """True if a string literal of ``code`` is the relative path of a file in the repository."""
    for node in ast.walk(ast.parse(code)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "/" in node.value
            and "\n" not in node.value
            and len(node.value) < 256
            and not node.value.startswith("/")
            and (ROOT / node.value).exists()
        ):
            return True
    return False


BLOCKS = python_blocks()


@pytest.mark.timeout(BLOCK_TIMEOUT_S)
@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_the_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.not_run is not None:
        pytest.skip(block.not_run)
    monkeypatch.chdir(ROOT if names_repository_files(block.code) else tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a block reading stdin sees its end
    # Padded so that a traceback names the line of the markdown file.
    code = compile("\n" * block.line + block.code, str(block.path), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(block.path)})


# --- the collector ------------------------------------------------------------------------------


def test_the_readme_and_the_docs_have_python_blocks() -> None:
    names = {b.path.name for b in BLOCKS}
    assert {"README.md", "simulator.md"} <= names
    assert ROOT / "docs" / "architecture.md" in DOCUMENTS


def test_every_not_run_marker_is_on_a_python_block_and_gives_a_reason() -> None:
    markers = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in DOCUMENTS
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if "not-run:" in line
    ]
    marked = {f"{b.name.rsplit(':', 1)[0]}:{b.line - 1}" for b in BLOCKS if b.not_run}
    assert sorted(marked) == sorted(markers), "a not-run marker must sit right above a block"
    assert all(b.not_run for b in BLOCKS if b.not_run is not None)


def test_fences_are_read_as_commonmark_reads_them(tmp_path: Path) -> None:
    text = (
        "intro\n"
        "```python\n"  # line 2
        "print(1)\n"
        "```\n"
        "<!-- not-run: a fragment -->\n"
        "````py\n"  # line 6
        "x = '''\n"
        "```json\n"
        "{}\n"
        "```\n"
        "'''\n"
        "````\n"
        "  ```yaml\n"  # line 13, indented
        "  a: 1\n"
        "    b: 2\n"
        "  ```\n"
        "``` not a fence ``` \n"
        "~~~ python\n"  # line 18
        "y = 2\n"
    )
    blocks = code_blocks(text, tmp_path / "t.md")
    assert [(b.line, b.language, b.not_run) for b in blocks] == [
        (2, "python", None),
        (6, "py", "a fragment"),
        (13, "yaml", None),
        (18, "python", None),
    ]
    assert blocks[0].code == "print(1)\n"
    assert blocks[1].code == "x = '''\n```json\n{}\n```\n'''\n"
    assert blocks[2].code == "a: 1\n  b: 2\n"
    assert blocks[3].code == "y = 2\n"


def test_a_block_naming_repository_files_runs_at_the_root() -> None:
    assert names_repository_files('load("examples/simulate/release.yaml")')
    assert not names_repository_files('open("no/such/folder/report.json", "w")')
    assert not names_repository_files('print("a/b")')
