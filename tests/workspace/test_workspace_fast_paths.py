"""What the cheaper paths of the workspace still guarantee, in real repositories: a checkout
moved without git is a worktree git knows at its new place (a locked one is left to git), the
plumbing commit keeps what the tool committed and runs no hook, tasks with the same
dependencies share one merge of them yet see nothing else, a run branch moved by someone else
is merged onto, and a failed attempt's edits to tracked files never reach the next task."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from coding_support import git, make_repo, worktrees

from metaagent.workspace import Workspace
from metaagent.workspace.files import move_checkout

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def _listed(repo: Path) -> list[str]:
    return sorted(str(p) for p in worktrees(repo))


def test_a_moved_checkout_is_the_same_worktree_at_its_new_place(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    old, new = tmp_path / "old", tmp_path / "new"
    git(repo, "worktree", "add", "-q", "--detach", str(old), "main")
    (old / "a.txt").write_text("changed\n")
    assert move_checkout(old, new)
    assert not old.exists()
    assert _listed(repo) == [str(new.resolve())]
    assert git(new, "rev-parse", "--show-toplevel") == str(new.resolve())
    assert git(new, "status", "--porcelain") == "M a.txt"  # its index and files came along
    git(repo, "worktree", "remove", "--force", str(new))  # and git can remove it there
    assert worktrees(repo) == []


def test_a_locked_or_foreign_directory_is_left_to_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    locked, target = tmp_path / "locked", tmp_path / "target"
    git(repo, "worktree", "add", "-q", "--detach", "--lock", str(locked), "main")
    assert not move_checkout(locked, target)
    assert locked.is_dir()
    assert not target.exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not move_checkout(plain, target)  # no .git file: nothing moved
    assert not move_checkout(repo, target)  # the main checkout (.git is a directory)
    assert plain.is_dir()
    assert repo.is_dir()


async def test_the_commit_keeps_the_tools_own_commits_and_runs_no_hook(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\n")
    hook.chmod(0o755)
    ws = Workspace(repo, "main")
    co = await ws.checkout("r", "t", [])
    assert await ws.commit(co, "nothing changed") == (co.start, [])
    (co.path / "by-tool.txt").write_text("committed by the tool\n")
    git(co.path, "add", "by-tool.txt")
    git(co.path, "commit", "-q", "--no-verify", "-m", "the tool's own commit")
    (tmp_path / "hook-ran").unlink()  # that one was the tool's commit, not ours
    (co.path / "left.txt").write_text("left for us\n")
    head, files = await ws.commit(co, "the rest")
    assert files == ["by-tool.txt", "left.txt"]
    assert git(co.path, "rev-parse", "HEAD", co.branch).split() == [head, head]
    assert git(repo, "log", "--format=%s", f"{co.start}..{head}").splitlines() == [
        "the rest",
        "the tool's own commit",
    ]
    assert git(co.path, "status", "--porcelain") == ""
    assert not (tmp_path / "hook-ran").exists()
    await ws.release(co, failed=False)
    ws.close()


async def test_same_dependencies_share_their_merge_and_see_nothing_else(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"base.txt": "base\n"})
    ws = Workspace(repo, "main")
    for name in ("a", "b", "other"):
        co = await ws.checkout("r", name, [])
        (co.path / f"{name}.txt").write_text(f"from {name}\n")
        head, _ = await ws.commit(co, name)
        await ws.merge(co, head, f"merge {name}")
        await ws.release(co, failed=False)
    x, y = await asyncio.gather(  # at the same time, as a layer of a run starts
        ws.checkout("r", "x", ["a", "b"]), ws.checkout("r", "y", ["a", "b"])
    )
    assert x.start == y.start  # one merge of the two dependencies, made once
    z = await ws.checkout("r", "z", ["a", "b"])
    assert z.start == x.start
    parents = git(repo, "rev-list", "--parents", "-n1", x.start).split()[1:]
    deps = git(repo, "rev-parse", "metaagent/r--a", "metaagent/r--b").split()
    assert sorted(parents) == sorted(deps)
    for co in (x, y, z):
        names = sorted(p.name for p in co.path.iterdir() if p.name != ".git")
        assert names == ["a.txt", "b.txt", "base.txt"]  # not other.txt, on the run branch
        await ws.release(co, failed=False)
    ws.close()


async def test_a_run_branch_moved_by_someone_else_is_merged_onto(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"base.txt": "base\n"})
    ws = Workspace(repo, "main")
    one = await ws.checkout("r", "one", [])
    (one.path / "one.txt").write_text("1\n")
    head, _ = await ws.commit(one, "one")
    await ws.merge(one, head, "merge one")
    # another writer adds a commit on the run branch behind the workspace's back
    git(repo, "worktree", "add", "-q", str(tmp_path / "outside"), "metaagent/r")
    (tmp_path / "outside" / "outside.txt").write_text("outside\n")
    git(tmp_path / "outside", "add", "outside.txt")
    git(tmp_path / "outside", "commit", "-q", "-m", "outside")
    outside = git(repo, "rev-parse", "metaagent/r")
    git(repo, "worktree", "remove", str(tmp_path / "outside"))
    two = await ws.checkout("r", "two", [])
    (two.path / "two.txt").write_text("2\n")
    head, _ = await ws.commit(two, "two")
    merged = await ws.merge(two, head, "merge two")
    assert git(repo, "rev-parse", "metaagent/r") == merged
    assert git(repo, "merge-base", outside, merged) == outside  # the other writer's is kept
    tree = git(repo, "ls-tree", "--name-only", merged).split()
    assert tree == ["base.txt", "one.txt", "outside.txt", "two.txt"]
    for co in (one, two):
        await ws.release(co, failed=False)
    ws.close()


async def test_a_failed_attempts_edits_never_reach_the_next_task(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"keep.txt": "original\n", "sub/deep.txt": "deep\n"})
    ws = Workspace(repo, "main")
    bad = await ws.checkout("r", "bad", [])
    (bad.path / "keep.txt").write_text("edited, never committed\n")
    (bad.path / "sub" / "deep.txt").unlink()
    (bad.path / "sub" / "new.txt").write_text("untracked\n")
    git(bad.path, "add", "keep.txt")  # staged too
    await ws.release(bad, failed=True)
    assert "metaagent/r--bad" not in git(repo, "branch", "--list")
    nxt = await ws.checkout("r", "next", [])  # the recycled checkout
    assert nxt.path != bad.path
    assert (nxt.path / "keep.txt").read_text() == "original\n"
    assert (nxt.path / "sub" / "deep.txt").read_text() == "deep\n"
    assert not (nxt.path / "sub" / "new.txt").exists()
    assert git(nxt.path, "status", "--porcelain", "--ignored") == ""
    assert git(nxt.path, "rev-parse", "--abbrev-ref", "HEAD") == "metaagent/r--next"
    again = await ws.checkout("r", "bad", [])  # the failed task's retry gets its branch again
    assert git(again.path, "rev-parse", "--abbrev-ref", "HEAD") == "metaagent/r--bad"
    for co in (nxt, again):
        await ws.release(co, failed=False)
    ws.close()
    assert worktrees(repo) == []
