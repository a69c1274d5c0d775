"""Fuzzing the workflow reader: mutated workflows either load or raise ``WorkflowError`` with a
location, never another exception, never a hang.

The seeds are the example workflows and the contract example; the mutations are byte flips,
truncations, inserted bytes, duplicated and deleted lines, deep nesting, alias chains and other
encodings. A seeded ``random.Random`` makes every run the same.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)

from metaagent.catalog import load_catalog
from metaagent.errors import WorkflowError
from metaagent.workflow.build import Workflow, load_workflow, parse_workflow_text

if TYPE_CHECKING:
    from metaagent.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
SEEDS = {
    "examples/pool/workflow.yaml": (ROOT / "examples/pool/workflow.yaml").read_bytes(),
    "examples/review/workflow.yaml": (ROOT / "examples/review/workflow.yaml").read_bytes(),
    "contract.yaml": CONTRACT.encode(),
}
CASES = 2400
MAX_MESSAGE = 8000  # characters: long lists are cut after 20 items


# Mostly characters that mean something to YAML, so that most mutants parse and reach the checks
# of the fields after it; now and then any byte at all.
SYNTAX = b"\x00\t\r\n\"'{}[]:&*!%@`|>-#,?.~=\\ 019aeyz"


def _byte(rng: random.Random) -> int:
    return rng.choice(SYNTAX) if rng.random() < 0.8 else rng.randrange(256)


def _flip(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + bytes([_byte(rng)]) + data[i + 1 :]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _insert(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    noise = bytes(_byte(rng) for _ in range(rng.randint(1, 8)))
    return data[:i] + noise + data[i:]


def _lines(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    if rng.random() < 0.5:
        return b"".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    return b"".join(lines[:i] + lines[i + 1 :])


def _nest(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([10, 63, 65, 200, 3000])
    deep = (
        b"[" * depth + b"1" + b"]" * depth
        if rng.random() < 0.5
        else b"{a: " * depth + b"1" + b"}" * depth
    )
    return _at_input(rng, data, deep)


def _aliases(rng: random.Random, data: bytes) -> bytes:
    width, levels = rng.randint(2, 10), rng.randint(2, 12)
    chain = [b"&a0 [x, y]"] + [
        b"&a%d [" % k + b", ".join([b"*a%d" % (k - 1)] * width) + b"]" for k in range(1, levels)
    ]
    return _at_input(rng, data, b"[" + b", ".join(chain) + b"]")


def _at_input(rng: random.Random, data: bytes, value: bytes) -> bytes:
    """``value`` as the ``input`` of a task (or, by chance, somewhere else)."""
    marker = b"capability: "
    at = data.find(marker)
    if at < 0 or rng.random() < 0.2:
        return _insert_line(rng, data, b"x: " + value + b"\n")
    line_start = data.rfind(b"\n", 0, at) + 1
    if data[line_start:at].strip().startswith(b"- {") or b"{" in data[line_start:at]:
        return data[:at] + b"input: " + value + b", " + data[at:]
    indent = data[line_start:at].replace(b"-", b" ")
    return data[:line_start] + indent + b"input: " + value + b"\n" + data[line_start:]


def _insert_line(rng: random.Random, data: bytes, line: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    i = rng.randrange(len(lines) + 1)
    return b"".join([*lines[:i], line, *lines[i:]])


def _encoding(rng: random.Random, data: bytes) -> bytes:
    text = data.decode("utf-8", errors="replace")
    choice = rng.randrange(4)
    if choice == 0:
        return text.encode("utf-16")  # with its BOM
    if choice == 1:
        return text.encode("utf-16-le")  # no BOM
    if choice == 2:
        return b"\xef\xbb\xbf" + data
    return text.encode("utf-32")[: rng.randrange(4, 4 * len(text) + 4)]


MUTATIONS = (_flip, _flip, _flip, _truncate, _insert, _insert, _lines, _lines, _nest, _aliases,
             _encoding)  # fmt: skip


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if data:
            data = rng.choice(MUTATIONS)(rng, data)
    return data


def check_one(data: bytes, source: str, base_dir: Path, catalog: Catalog) -> str:
    """``ok`` or ``error``; fails the test for anything else."""
    error: WorkflowError | None = None
    try:
        wf = parse_workflow_text(data, source=source, base_dir=base_dir, catalog=catalog)
    except WorkflowError as exc:
        error = exc
    if error is None:
        assert isinstance(wf, Workflow)
        return "ok"
    message = str(error)
    assert error.where, f"no location: {message[:300]}"
    assert message.startswith(source), message[:300]
    assert len(message) <= MAX_MESSAGE, message[:300]
    return "error"


@pytest.mark.timeout(120)  # a hang fails here; the run itself takes a few seconds
def test_mutated_workflows_load_or_fail_with_a_located_workflow_error() -> None:
    rng = random.Random(20240601)
    catalog = load_catalog()
    outcomes = {"ok": 0, "error": 0}
    names = sorted(SEEDS)
    for n in range(CASES):
        name = names[n % len(names)]
        data = mutate(rng, SEEDS[name])
        try:
            outcome = check_one(data, name, ROOT / Path(name).parent, catalog)
        except BaseException:
            print(f"case {n} (from {name}) fails; its bytes: {data!r}")
            raise
        outcomes[outcome] += 1
    assert outcomes["ok"] > 0, outcomes
    assert outcomes["error"] > 0, outcomes


def test_files_on_disk_take_the_same_path(tmp_path: Path) -> None:
    rng = random.Random(7)
    for n in range(60):
        path = tmp_path / f"wf{n}.yaml"
        path.write_bytes(mutate(rng, SEEDS["contract.yaml"]))
        try:
            load_workflow(path)
        except WorkflowError as exc:
            message = str(exc)
        else:
            continue
        assert message.startswith(str(path))


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_the_seeds_themselves_load(seed: str) -> None:
    base = ROOT / Path(seed).parent
    assert isinstance(parse_workflow_text(SEEDS[seed], source=seed, base_dir=base), Workflow)
