"""Helpers for the coding-agent tests: the fake tools on PATH, real git repositories, and the
CLI run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent / "agents" / "fakes"
CLI = [sys.executable, "-m", "metaagent.cli"]


def fake_env(**extra: str) -> dict[str, str]:
    """The environment with the fake ``claude``, ``codex`` and ``aider`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{FAKES}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.update(extra)
    return env


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=repo, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository on branch ``main`` with one commit of ``files``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"README.md": "# sample\n"}).items():
        f = path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    git(path, "add", "--all")
    git(path, "commit", "-q", "-m", "initial")
    return path


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
        env=env or fake_env(),
    )  # fmt: skip


def report(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    return data


def tasks_of(rep: dict[str, object]) -> dict[str, dict[str, object]]:
    tasks = rep["tasks"]
    assert isinstance(tasks, list)
    return {t["id"]: t for t in tasks}


def run_id_of(done: subprocess.CompletedProcess[str]) -> str:
    for line in done.stderr.splitlines():
        if line.startswith("run "):
            return line.split()[1]
    raise AssertionError(f"no run id in: {done.stderr}")


def worktrees(repo: Path) -> list[str]:
    """Every worktree git knows of, the main checkout excepted."""
    out = git(repo, "worktree", "list", "--porcelain")
    paths = [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("worktree ")]
    return [p for p in paths if Path(p).resolve() != repo.resolve()]
