"""A workflow's repository: one git worktree per task, merged back into the run branch.

Layout, in the repository ``repo`` (``RUN`` and ``TASK`` made safe for git by ``ref_safe``):

- ``refs/metaagent/bases/RUN``: the commit ``base`` named when the run first used the
  workspace (so a resumed run starts from the same commit even if ``base`` moved);
- branch ``metaagent/RUN``: the run branch, where every task's change is merged;
- branch ``metaagent/RUN--TASK`` and worktree ``.metaagent/worktrees/RUN/TASK``: one task's
  checkout. (Not ``metaagent/RUN/TASK``: git cannot hold a branch ``metaagent/RUN`` and
  branches under it at once.)

A task's worktree starts at the base plus the merged branches of its dependencies (each of
which holds its own dependencies'), so it sees what its upstream tasks wrote; a retry after a
merge conflict starts from the run branch instead, which holds the change it conflicted with.
Its branch is merged into the run branch after the attempt and its check passed: a dependent
starts only after its dependencies succeeded, so merges happen in dependency order. Merging
needs no checkout of the run branch (``git merge-tree --write-tree``, git >= 2.38).

A finished task's checkout is not deleted but cleaned, detached and kept aside
(``.metaagent/worktrees/.spare/PID``) for the next task of this process, which moves it to its
own path (``files.move_checkout``) and checks out its start commit: only the files that differ
are written, where a new worktree writes every file of the repository.

Git processes are the cost per task (each is 5-10 ms on a loaded machine), so the workspace
keeps what it wrote itself: the run branch's head (moved only by compare-and-swap, re-read when
someone else moved it), the commit each task merged (its dependents' start), and the merge of
each pair of dependency commits (shared by the tasks that have the same dependencies).

``close`` removes the spares at the end of the run; a process's first use removes those of
processes that are gone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.errors import MetaAgentError
from metaagent.workspace.files import (
    add_line,
    children,
    exists,
    make_dir,
    move_checkout,
    owner_alive,
    prune_dirs,
    same_dir,
)
from metaagent.workspace.git import GitError, git, git_sync, ref_safe

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Checkout", "MergeConflict", "Workspace", "WorkspaceError"]

MAX_SPARE = 16
"""Checkouts kept for reuse at most: a new task's worktree is then a recycled one."""
SPARE = ".spare"
MAX_DIFF_CHARS = 8000
"""The longest conflicting diff given back as feedback; the rest is cut, marked."""


class WorkspaceError(MetaAgentError, RuntimeError):
    """The workspace cannot be used (no repository, an unknown base, a broken worktree)."""


class MergeConflict(MetaAgentError, RuntimeError):
    """A task's branch does not merge into the run branch; the message holds the diff."""


@dataclass(frozen=True, slots=True)
class Checkout:
    """One task's worktree: where it is, its branch, and the commit it started from."""

    run_id: str
    task_id: str
    path: Path
    branch: str
    run_branch: str
    start: str


@dataclass(slots=True)
class _Run:
    base: str
    head: str
    """The run branch's head as this process last read or moved it (under ``lock``; every
    move is a compare-and-swap, so a branch moved by someone else is read again)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conflicted: set[str] = field(default_factory=set)
    merged: dict[str, str] = field(default_factory=dict)
    """The commit each task merged into the run branch: its dependents start from it."""


class Workspace:
    """The repository at ``repo`` with the tasks of each run branching from ``base``.

    ``keep_failed`` keeps the worktree (and branch) of a failed attempt for inspection; it is
    removed when the task runs again, or when the run is resumed. ``check`` (at load) raises
    ``WorkspaceError`` for a path that is no git repository or a base that names no commit.
    """

    def __init__(self, repo: Path, base: str = "HEAD", *, keep_failed: bool = False) -> None:
        self.repo = repo
        self.base = base
        self._keep_failed = keep_failed
        self._runs: dict[str, _Run] = {}
        self._lock: asyncio.Lock | None = None
        self._spare: list[Path] = []  # detached checkouts, ready to be moved and reused
        # (ours, theirs) -> their merge, made once even for tasks that start at the same time
        self._combined: dict[tuple[str, str], asyncio.Future[str]] = {}

    @property
    def keep_failed(self) -> bool:
        """Whether failed attempts' worktrees stay. Operational, so not part of the workflow's
        identity (a run started with ``--keep-worktrees`` resumes without it)."""
        return self._keep_failed

    @keep_failed.setter
    def keep_failed(self, keep: bool) -> None:
        self._keep_failed = keep

    @property
    def root(self) -> Path:
        return self.repo / ".metaagent" / "worktrees"

    @property
    def _spare_dir(self) -> Path:
        """This process's spares: another process using the repository keeps its own."""
        return self.root / SPARE / str(os.getpid())

    def check(self) -> None:
        if not self.repo.is_dir():
            raise WorkspaceError(f"repo {str(self.repo)!r} is not a directory")
        try:
            top = git_sync(self.repo, "rev-parse", "--show-toplevel").out.strip()
            git_sync(self.repo, "rev-parse", "--verify", "--quiet", f"{self.base}^{{commit}}")
        except GitError as exc:
            raise WorkspaceError(
                f"repo {str(self.repo)!r} with base {self.base!r} cannot be used: {exc}"
            ) from None
        if Path(top).resolve() != self.repo.resolve():
            raise WorkspaceError(f"repo {str(self.repo)!r} is inside {top!r}, not its top level")

    def describe(self) -> dict[str, object]:
        return {"repo": str(self.repo), "base": self.base, "keep_failed": self.keep_failed}

    # --- runs ---------------------------------------------------------------------------------

    def run_branch(self, run_id: str) -> str:
        return f"metaagent/{ref_safe(run_id)}"

    def task_branch(self, run_id: str, task_id: str) -> str:
        return f"metaagent/{ref_safe(run_id)}--{ref_safe(task_id)}"

    def task_path(self, run_id: str, task_id: str) -> Path:
        return self.root / ref_safe(run_id) / ref_safe(task_id)

    async def _run(self, run_id: str) -> _Run:
        """The run's state; the first call in this process fixes its base and run branch and
        removes every worktree left under the run (attempts of an earlier process: lost, or
        failures kept)."""
        run = self._runs.get(run_id)
        if run is not None:
            return run
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                return run
            base_ref = f"refs/metaagent/bases/{ref_safe(run_id)}"
            have = await git(self.repo, "rev-parse", "--verify", "--quiet", base_ref, ok=(0, 1))
            if have.returncode == 0:
                base = have.out.strip()
            else:
                base = await self._resolve(self.base)
                await git(self.repo, "update-ref", base_ref, base)
            branch = f"refs/heads/{self.run_branch(run_id)}"
            has_branch = await git(self.repo, "rev-parse", "--verify", "--quiet", branch, ok=(0, 1))
            head = has_branch.out.strip()
            if has_branch.returncode != 0:
                await git(self.repo, "update-ref", branch, base, "")
                head = base
            await self._exclude()
            if not self._runs and not self._spare:  # this process's first: earlier spares go
                for d in children(self.root / SPARE):
                    if not owner_alive(d.name):  # a dead process's spares
                        await self._sweep(d)
                        prune_dirs(d, d)
            await self._sweep(self.root / ref_safe(run_id))
            run = self._runs[run_id] = _Run(base, head)
            return run

    async def _resolve(self, ref: str) -> str:
        r = await git(self.repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
        if r.returncode != 0:
            raise WorkspaceError(f"base {ref!r} names no commit in {self.repo}")
        return r.out.strip()

    async def _exclude(self) -> None:
        """Keep ``.metaagent/`` out of ``git status`` of the main checkout."""
        common = (await git(self.repo, "rev-parse", "--git-common-dir")).out.strip()
        add_line(self.repo / common / "info" / "exclude", "/.metaagent/")

    async def _sweep(self, run_dir: Path) -> None:
        for child in children(run_dir):
            await self._remove_tree(child)
        await git(self.repo, "worktree", "prune")

    async def _remove_tree(self, path: Path) -> None:
        if exists(path / ".git"):
            force = ("--force", "--force")
            await git(self.repo, "worktree", "remove", *force, str(path), ok=(0, 128))
        shutil.rmtree(path, ignore_errors=True)

    async def _move(self, src: Path, dst: Path) -> None:
        if not move_checkout(src, dst):
            await git(self.repo, "worktree", "move", str(src), str(dst))

    # --- one task -----------------------------------------------------------------------------

    async def checkout(self, run_id: str, task_id: str, depends_on: Sequence[str]) -> Checkout:
        """A fresh worktree for an attempt of ``task_id`` (a stale one is removed first),
        checked to be a real checkout of the expected commit."""
        run = await self._run(run_id)
        assert self._lock is not None
        path = self.task_path(run_id, task_id)
        branch = self.task_branch(run_id, task_id)
        if task_id in run.conflicted:  # the retry of a conflict: the change it conflicted with
            start = await self._resolve(f"refs/heads/{self.run_branch(run_id)}")
        else:  # reads finished tasks' branches and writes objects only: no lock needed
            start = await self._start(run, run_id, depends_on)
        async with self._lock:
            if exists(path):
                await self._remove_tree(path)
                await git(self.repo, "worktree", "prune")
            make_dir(path.parent)
            spare = self._spare.pop() if self._spare else None
            if spare is not None:
                await self._move(spare, path)
        if spare is None:  # outside the lock: writing every file takes a while
            # -B: a failed earlier attempt's branch, if kept, is reset to the new start
            await git(self.repo, "worktree", "add", "--quiet", "-B", branch, str(path), start)
        else:  # a recycled checkout (cleaned at release): only the files that differ change
            await git(path, "checkout", "--quiet", "--force", "-B", branch, start)
        co = Checkout(run_id, task_id, path, branch, self.run_branch(run_id), start)
        await self._check_real(co)
        return co

    async def _start(self, run: _Run, run_id: str, deps: Sequence[str]) -> str:
        """The base with the branches of the dependencies that have one merged in: the commit
        each merged in this process, else (a run resumed) what its branch holds."""
        heads = {dep: run.merged[dep] for dep in deps if dep in run.merged}
        unknown = [dep for dep in deps if dep not in heads]
        if unknown:  # one call for all of them (a dependency may have no branch)
            refs = {f"refs/heads/{self.task_branch(run_id, dep)}": dep for dep in unknown}
            fmt = "--format=%(refname) %(objectname)"
            listed = await git(self.repo, "for-each-ref", fmt, *refs)
            for line in listed.out.splitlines():
                ref, _, oid = line.partition(" ")
                if ref in refs:
                    heads[refs[ref]] = oid
        ordered = [heads[dep] for dep in deps if dep in heads]
        start = ordered[0] if ordered else run.base
        for other in ordered[1:]:  # tasks with the same dependencies share their merge
            start = await self._combined_once(start, other, deps)
        return start

    async def _combined_once(self, ours: str, theirs: str, deps: Sequence[str]) -> str:
        key = (ours, theirs)
        made = self._combined.get(key)
        if made is None:
            message = f"metaagent: merge dependencies {', '.join(deps)}"
            made = self._combined[key] = asyncio.ensure_future(self._combine(ours, theirs, message))
            made.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen, if unused
        try:  # shielded: one waiter cancelled does not cancel the merge the others wait for
            return await asyncio.shield(made)
        except GitError:  # failed to run: the next task tries again (a conflict stays known)
            if self._combined.get(key) is made:
                del self._combined[key]
            raise

    async def _combine(self, ours: str, theirs: str, message: str) -> str:
        """A commit holding both ``ours`` and ``theirs``: one of them when it holds the other,
        else their merge; ``MergeConflict`` when they do not merge."""
        base = await git(self.repo, "merge-base", ours, theirs, ok=(0, 1))
        common = base.out.strip()
        if common == theirs:
            return ours
        if common == ours:
            return theirs
        r = await git(
            self.repo, "merge-tree", "--write-tree", "--name-only", ours, theirs, ok=(0, 1)
        )
        if r.returncode == 1:
            raise MergeConflict(await self._conflict_text(ours, theirs, r.out))
        tree = r.out.split("\n", 1)[0].strip()
        made = await git(self.repo, "commit-tree", tree, "-p", ours, "-p", theirs, "-m", message)
        return made.out.strip()

    async def _check_real(self, co: Checkout) -> None:
        """The worktree is there, is its own checkout, and holds the start commit: never a
        silent fall-back to the main checkout."""
        try:
            where = await git(co.path, "rev-parse", "--show-toplevel", "HEAD")
        except (GitError, OSError) as exc:
            raise WorkspaceError(f"worktree {co.path} was not created: {exc}") from exc
        top, head = [*where.out.split("\n"), "", ""][:2]
        if not same_dir(top, co.path) or same_dir(top, self.repo):
            raise WorkspaceError(f"worktree {co.path} is not a checkout of its own (top {top})")
        if head != co.start:
            raise WorkspaceError(f"worktree {co.path} is at {head}, expected {co.start}")

    async def commit(self, co: Checkout, message: str) -> tuple[str, list[str]]:
        """Commit everything the attempt changed (the tool may have committed some itself);
        return the branch's head and the files changed since the start."""
        # Plumbing, not ``git commit``: no hooks, no second pass over the index to decide
        # whether anything is staged, no automatic gc. The same commit otherwise.
        await git(co.path, "add", "--all")
        tree = (await git(co.path, "write-tree")).out.strip()
        head, head_tree = (await git(co.path, "rev-parse", "HEAD", "HEAD^{tree}")).out.split()
        if tree != head_tree:
            made = await git(co.path, "commit-tree", tree, "-p", head, "-m", message)
            new = made.out.strip()
            await git(co.path, "update-ref", "-m", f"commit: {message}", "HEAD", new, head)
            head = new
        if head == co.start:
            return head, []
        names = await git(co.path, "diff", "--name-only", co.start, head)
        return head, [n for n in names.out.splitlines() if n]

    async def merge(self, co: Checkout, head: str, message: str) -> str:
        """Merge ``head`` (the task's branch) into the run branch; return the run branch's new
        head. ``MergeConflict`` (with the conflicting diff) when it does not merge; the task's
        next attempt then starts from the run branch."""
        run = await self._run(co.run_id)
        ref = f"refs/heads/{co.run_branch}"
        async with run.lock:
            for again in (False, True):
                if again:  # the branch moved under us: merge into what it holds now
                    run.head = await self._resolve(ref)
                try:
                    new = await self._combine(run.head, head, message)
                except MergeConflict:
                    run.conflicted.add(co.task_id)
                    raise
                if new == run.head:
                    break
                moved = await git(self.repo, "update-ref", ref, new, run.head, ok=(0, 1, 128))
                if moved.returncode == 0:
                    break
                if again:
                    raise GitError(f"cannot move {ref} to {new}: {moved.err.strip()}")
            run.head = new
            run.merged[co.task_id] = head
            run.conflicted.discard(co.task_id)
            return new

    async def _conflict_text(self, ours: str, theirs: str, listing: str) -> str:
        lines = listing.split("\n")
        files = []
        for line in lines[1:]:
            if not line.strip():
                break
            files.append(line.strip())
        base = (await git(self.repo, "merge-base", ours, theirs)).out.strip()
        theirs_diff = (await git(self.repo, "diff", base, ours, "--", *files)).out
        mine = (await git(self.repo, "diff", base, theirs, "--", *files)).out
        text = (
            f"merge conflict in {', '.join(files) or '(unknown files)'}: the run branch changed "
            f"them since this task's start.\n"
            f"--- the run branch's change:\n{theirs_diff}\n--- this attempt's change:\n{mine}"
        )
        if len(text) > MAX_DIFF_CHARS:
            text = text[:MAX_DIFF_CHARS] + f"\n[... {len(text) - MAX_DIFF_CHARS} characters cut]"
        return text

    async def release(self, co: Checkout, *, failed: bool) -> None:
        """Remove the worktree after the attempt (a failed one stays with ``keep_failed``);
        a failed attempt's branch goes with it, a successful one's stays for its dependents."""
        if failed and self.keep_failed:
            return
        assert self._lock is not None
        # Kept for the next task (``MAX_SPARE`` at most), which rewrites only the files that
        # differ from its start (and every changed tracked one: ``checkout --force``). Nothing
        # untracked of this task may reach it; detached, the checkout no longer holds the
        # branch (the index and files stay: the next checkout resets them).
        recycled = await git(co.path, "clean", "-ffdxq", ok=(0, 1, 128))
        if recycled.returncode == 0:
            detach = ("update-ref", "--no-deref", "HEAD", "HEAD")
            recycled = await git(co.path, *detach, ok=(0, 1, 128))
        async with self._lock:
            if failed:
                await git(self.repo, "branch", "-D", co.branch, ok=(0, 1))
            if recycled.returncode == 0 and len(self._spare) < MAX_SPARE:
                spare = self._spare_dir / uuid.uuid4().hex[:12]
                make_dir(spare.parent)
                await self._move(co.path, spare)
                self._spare.append(spare)
            else:
                await self._remove_tree(co.path)
            prune_dirs(co.path.parent, self.root.parent)

    def close(self) -> None:
        """Remove the spare checkouts kept for reuse (at the end of a run: the CLI calls this;
        a library user calls it when done). Also run by the next process's first use."""
        spares, self._spare = self._spare, []
        for path in [*spares, *children(self._spare_dir)]:
            if exists(path / ".git"):
                force = ("--force", "--force")
                git_sync(self.repo, "worktree", "remove", *force, str(path), ok=(0, 128))
            shutil.rmtree(path, ignore_errors=True)
        if exists(self.repo / ".git"):
            git_sync(self.repo, "worktree", "prune", ok=(0, 128))
        prune_dirs(self._spare_dir, self.root.parent)
