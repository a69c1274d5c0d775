"""The workspace on its own, in a real repository: recycled checkouts hold nothing of the task
before, failed attempts' branches go, names are made safe, a conflict names both sides."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import pytest
from coding_support import git, make_repo, worktrees

from metaagent.workspace import MergeConflict, Workspace, WorkspaceError, ref_safe

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


async def test_a_recycled_checkout_starts_clean_at_its_own_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "r\n", ".gitignore": "*.log\n"})
    ws = Workspace(repo, "main")
    ws.check()
    one = await ws.checkout("r1", "one", [])
    _write(one.path / "one.txt", "1")
    _write(one.path / "build.log", "ignored")
    head, files = await ws.commit(one, "one")
    assert files == ["one.txt"]
    _write(one.path / "left-behind.txt", "untracked")
    await ws.merge(one, head, "merge one")
    await ws.release(one, failed=False)
    assert not one.path.exists()

    two = await ws.checkout("r1", "two", [])  # no dependency: the base, in the spare checkout
    assert sorted(p.name for p in two.path.iterdir()) == [".git", ".gitignore", "README.md"]
    assert git(two.path, "rev-parse", "--abbrev-ref", "HEAD") == "metaagent/r1--two"
    three = await ws.checkout("r1", "three", ["one"])  # sees its dependency's file
    assert (three.path / "one.txt").read_text() == "1"
    await ws.release(two, failed=True)
    await ws.release(three, failed=False)
    assert "metaagent/r1--two" not in git(repo, "branch", "--list")  # a failure's branch goes
    assert "metaagent/r1--one" in git(repo, "branch", "--list")
    ws.close()
    assert worktrees(repo) == []
    assert not (repo / ".metaagent").exists()
    assert git(repo, "status", "--porcelain") == ""


async def test_a_conflict_names_the_files_and_both_changes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"f.txt": "base\n"})
    ws = Workspace(repo, "main")
    a = await ws.checkout("r", "a", [])
    b = await ws.checkout("r", "b", [])
    _write(a.path / "f.txt", "from a\n")
    _write(b.path / "f.txt", "from b\n")
    head_a, _ = await ws.commit(a, "a")
    head_b, _ = await ws.commit(b, "b")
    await ws.merge(a, head_a, "a")
    with pytest.raises(MergeConflict) as err:
        await ws.merge(b, head_b, "b")
    text = str(err.value)
    assert text.startswith("merge conflict in f.txt")
    assert "+from a" in text.split("--- this attempt's change:")[0]
    assert "+from b" in text.split("--- this attempt's change:")[1]
    again = await ws.checkout("r", "b", [])  # the retry starts from the run branch
    assert (again.path / "f.txt").read_text() == "from a\n"
    for co in (a, again):
        await ws.release(co, failed=False)
    ws.close()


def test_names_are_made_safe_for_git() -> None:
    assert ref_safe("task-1.v2") == "task-1.v2"
    odd = ref_safe("../a b:c")
    assert "/" not in odd
    assert ":" not in odd
    assert " " not in odd
    assert not odd.startswith(".")
    assert ref_safe("x.lock") != "x.lock"
    assert ref_safe("a b") != ref_safe("a_b")  # changed names carry a hash of the original


def test_check_refuses_what_is_not_a_repository_top_level(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    with pytest.raises(WorkspaceError, match="is not a directory"):
        Workspace(tmp_path / "none").check()
    with pytest.raises(WorkspaceError, match="not its top level"):
        Workspace(repo / "sub").check()
    with pytest.raises(WorkspaceError, match="base 'nope' cannot be used"):
        Workspace(repo, "nope").check()


@pytest.fixture
def pids() -> Iterator[tuple[int, int]]:
    """(the pid of a process that has ended, the pid of one still running)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    yield gone.pid, alive.pid
    alive.kill()
    alive.wait()


async def test_first_use_sweeps_the_spares_of_dead_processes_only(
    tmp_path: Path, pids: tuple[int, int]
) -> None:
    gone, alive = pids
    repo = make_repo(tmp_path / "repo")
    spares = repo / ".metaagent" / "worktrees" / ".spare"
    for pid in (gone, alive):
        (spares / str(pid) / "x").mkdir(parents=True)
    ws = Workspace(repo, "main")
    co = await ws.checkout("r", "t", [])
    assert not (spares / str(gone)).exists()
    assert (spares / str(alive) / "x").is_dir()  # another live process's: kept
    await ws.release(co, failed=False)
    assert (spares / str(os.getpid())).is_dir()  # this process's own spare
    ws.close()
    assert not (spares / str(os.getpid())).exists()
    assert (spares / str(alive)).is_dir()


async def test_a_directory_that_is_not_its_own_checkout_is_refused(tmp_path: Path) -> None:
    """The silent fall-back other tools suffer: a "worktree" that is a plain directory of the
    main checkout (git there answers for the main repository) is an error, not a run."""
    from metaagent.workspace import Checkout

    repo = make_repo(tmp_path / "repo")
    ws = Workspace(repo, "main")
    plain = repo / "not-a-worktree"
    plain.mkdir()
    head = git(repo, "rev-parse", "HEAD")
    fake = Checkout("r", "t", plain, "metaagent/r--t", "metaagent/r", head)
    with pytest.raises(WorkspaceError, match="is not a checkout of its own"):
        await ws._check_real(fake)
    real = await ws.checkout("r", "t", [])
    await ws._check_real(real)  # a real one passes
    moved = Checkout("r", "t", real.path, real.branch, real.run_branch, "0" * 40)
    with pytest.raises(WorkspaceError, match="expected 0000"):
        await ws._check_real(moved)
    await ws.release(real, failed=False)
    ws.close()
