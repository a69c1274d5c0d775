"""Shared fixtures: agent specs for the pure core, and process-liveness checks for runner tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from metaagent import AgentSpec, FunctionRunner, Runner
from metaagent.testing import wait_until


def _noop(ctx: object) -> None:
    return None


NOOP_RUNNER = FunctionRunner(_noop, name="noop")
"""A real runner for specs handed to the pure scheduler, which never calls it."""

SpecFactory = Callable[..., AgentSpec]


@pytest.fixture
def make_spec() -> SpecFactory:
    """Build an ``AgentSpec``: ``make_spec("alpha", {"code": 0.9}, concurrency=2)``."""

    def build(
        name: str,
        capabilities: Mapping[str, float],
        *,
        concurrency: int = 1,
        runner: Runner = NOOP_RUNNER,
    ) -> AgentSpec:
        return AgentSpec(name, dict(capabilities), runner, concurrency=concurrency)

    return build


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def processes_with(token: str) -> list[int]:
    """Pids of live processes whose command line contains ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if token in cmdline and process_alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.fixture
def wait_dead() -> Callable[[int], Awaitable[bool]]:
    """Return ``await wait_dead(pid)``: True once the process is dead; fails after 5 s."""

    async def check(pid: int) -> bool:
        await wait_until(lambda: not process_alive(pid), what=f"process {pid} dead")
        return True

    return check


@pytest.fixture
def wait_gone() -> Callable[[str], Awaitable[bool]]:
    """Return ``await wait_gone(token)``: True once no live process has ``token`` in its argv.

    Fails after 5 s.
    """

    async def check(token: str) -> bool:
        await wait_until(lambda: not processes_with(token), what=f"no process with {token!r}")
        return True

    return check


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for child scripts."""
    return sys.executable


@pytest.fixture
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench`` is a top-level folder of the repository, not part of the installed package."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
