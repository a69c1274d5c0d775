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

A finished task's checkout is not deleted but detached and kept aside
(``.metaagent/worktrees/.spare/PID``) for the next task of this process, which moves it to its
own path and checks out its start commit: only the files that differ are written, where a new
worktree writes every file of the repository. ``close`` removes the spares at the end of the
run; a process's first use removes those of processes that are gone.
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
from metaagent.workspace.git import GitError, git, git_sync, ref_safe

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Checkout", "MergeConflict", "Workspace", "WorkspaceError"]

MAX_SPARE = 16
"""Checkouts kept for reuse at most: a new task's worktree is then a recycled one."""
SPARE = ".spare"
MAX_DIFF_CHARS = 8000
"""The longest conflicting diff given back as feedback; the rest is cut, marked."""


def _add_line(file: Path, line: str) -> None:
    file = file.resolve()
    text = file.read_text() if file.exists() else ""
    if line not in text.splitlines():
        file.parent.mkdir(parents=True, exist_ok=True)
        with file.open("a") as fh:
            fh.write(("\n" if text and not text.endswith("\n") else "") + line + "\n")


def _children(d: Path) -> list[Path]:
    return sorted(d.iterdir()) if d.is_dir() else []


def _exists(p: Path) -> bool:
    return p.exists()


def _owner_alive(name: str) -> bool:
    """True when ``name`` is the pid of a live process other than this one."""
    if not name.isdigit() or int(name) == os.getpid():
        return False
    try:
        os.kill(int(name), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mkdir(p: Path) -> None:
    p.mkdir(parents=True, exist_ok=True)


def _prune_dirs(d: Path, upto: Path) -> None:
    """Remove ``d`` and its parents up to ``upto`` (included) while they are empty."""
    while True:
        try:
            d.rmdir()
        except OSError:
            return
        if d == upto:
            return
        d = d.parent


def _same_dir(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conflicted: set[str] = field(default_factory=set)


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
            if has_branch.returncode != 0:
                await git(self.repo, "update-ref", branch, base)
            await self._exclude()
            if not self._runs and not self._spare:  # this process's first: earlier spares go
                for d in _children(self.root / SPARE):
                    if not _owner_alive(d.name):  # a dead process's spares
                        await self._sweep(d)
                        _prune_dirs(d, d)
            await self._sweep(self.root / ref_safe(run_id))
            run = self._runs[run_id] = _Run(base)
            return run

    async def _resolve(self, ref: str) -> str:
        r = await git(self.repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
        if r.returncode != 0:
            raise WorkspaceError(f"base {ref!r} names no commit in {self.repo}")
        return r.out.strip()

    async def _exclude(self) -> None:
        """Keep ``.metaagent/`` out of ``git status`` of the main checkout."""
        common = (await git(self.repo, "rev-parse", "--git-common-dir")).out.strip()
        _add_line(self.repo / common / "info" / "exclude", "/.metaagent/")

    async def _sweep(self, run_dir: Path) -> None:
        for child in _children(run_dir):
            await self._remove_tree(child)
        await git(self.repo, "worktree", "prune")

    async def _remove_tree(self, path: Path) -> None:
        if _exists(path / ".git"):
            force = ("--force", "--force")
            await git(self.repo, "worktree", "remove", *force, str(path), ok=(0, 128))
        shutil.rmtree(path, ignore_errors=True)

    # --- one task -----------------------------------------------------------------------------

    async def checkout(self, run_id: str, task_id: str, depends_on: Sequence[str]) -> Checkout:
        """A fresh worktree for an attempt of ``task_id`` (a stale one is removed first),
        checked to be a real checkout of the expected commit."""
        run = await self._run(run_id)
        assert self._lock is not None
        path = self.task_path(run_id, task_id)
        branch = self.task_branch(run_id, task_id)
        async with self._lock:
            if _exists(path):
                await self._remove_tree(path)
                await git(self.repo, "worktree", "prune")
            if task_id in run.conflicted:
                start = await self._resolve(f"refs/heads/{self.run_branch(run_id)}")
            else:
                start = await self._start(run, run_id, task_id, depends_on)
            _mkdir(path.parent)
            spare = self._spare.pop() if self._spare else None
            if spare is not None:
                await git(self.repo, "worktree", "move", str(spare), str(path))
        if spare is None:  # outside the lock: writing every file takes a while
            # -B: a failed earlier attempt's branch, if kept, is reset to the new start
            await git(self.repo, "worktree", "add", "--quiet", "-B", branch, str(path), start)
        else:  # a recycled checkout (cleaned at release): only the files that differ change
            await git(path, "checkout", "--quiet", "--force", "-B", branch, start)
        co = Checkout(run_id, task_id, path, branch, self.run_branch(run_id), start)
        await self._check_real(co)
        return co

    async def _start(self, run: _Run, run_id: str, task_id: str, deps: Sequence[str]) -> str:
        """The base with the branches of the dependencies that have one merged in."""
        heads: list[str] = []
        if deps:  # one call for every dependency's branch (a dependency may have none)
            refs = [f"refs/heads/{self.task_branch(run_id, dep)}" for dep in deps]
            fmt = "--format=%(refname) %(objectname)"
            listed = await git(self.repo, "for-each-ref", fmt, *refs)
            found = dict(line.split(" ", 1) for line in listed.out.splitlines() if line)
            heads = [found[r] for r in refs if r in found]
        start = heads[0] if heads else run.base
        for other in heads[1:]:
            start = await self._combine(start, other, f"metaagent: dependencies of {task_id}")
        return start

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
        if not _same_dir(top, co.path) or _same_dir(top, self.repo):
            raise WorkspaceError(f"worktree {co.path} is not a checkout of its own (top {top})")
        if head != co.start:
            raise WorkspaceError(f"worktree {co.path} is at {head}, expected {co.start}")

    async def commit(self, co: Checkout, message: str) -> tuple[str, list[str]]:
        """Commit everything the attempt changed (the tool may have committed some itself);
        return the branch's head and the files changed since the start."""
        await git(co.path, "add", "--all")
        staged = await git(co.path, "diff", "--cached", "--quiet", ok=(0, 1))
        if staged.returncode == 1:
            await git(co.path, "commit", "--quiet", "--no-verify", "-m", message)
        head = (await git(co.path, "rev-parse", "HEAD")).out.strip()
        names = await git(co.path, "diff", "--name-only", co.start, head)
        return head, [n for n in names.out.splitlines() if n]

    async def merge(self, co: Checkout, head: str, message: str) -> str:
        """Merge ``head`` (the task's branch) into the run branch; return the run branch's new
        head. ``MergeConflict`` (with the conflicting diff) when it does not merge; the task's
        next attempt then starts from the run branch."""
        run = await self._run(co.run_id)
        ref = f"refs/heads/{co.run_branch}"
        async with run.lock:
            current = await self._resolve(ref)
            try:
                new = await self._combine(current, head, message)
            except MergeConflict:
                run.conflicted.add(co.task_id)
                raise
            if new != current:
                await git(self.repo, "update-ref", ref, new, current)
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
        # Detached, the checkout no longer holds the branch; it is kept for the next task
        # (``MAX_SPARE`` at most), which rewrites only the files that differ.
        recycled = await git(co.path, "checkout", "--quiet", "--detach", ok=(0, 1, 128))
        if recycled.returncode == 0:  # nothing of this task may reach the next one
            recycled = await git(co.path, "clean", "-ffdxq", ok=(0, 1, 128))
        async with self._lock:
            if failed:
                await git(self.repo, "branch", "-D", co.branch, ok=(0, 1))
            if recycled.returncode == 0 and len(self._spare) < MAX_SPARE:
                spare = self._spare_dir / uuid.uuid4().hex[:12]
                _mkdir(spare.parent)
                await git(self.repo, "worktree", "move", str(co.path), str(spare))
                self._spare.append(spare)
            else:
                await self._remove_tree(co.path)
            _prune_dirs(co.path.parent, self.root.parent)

    def close(self) -> None:
        """Remove the spare checkouts kept for reuse (at the end of a run: the CLI calls this;
        a library user calls it when done). Also run by the next process's first use."""
        spares, self._spare = self._spare, []
        for path in [*spares, *_children(self._spare_dir)]:
            if _exists(path / ".git"):
                force = ("--force", "--force")
                git_sync(self.repo, "worktree", "remove", *force, str(path), ok=(0, 128))
            shutil.rmtree(path, ignore_errors=True)
        if _exists(self.repo / ".git"):
            git_sync(self.repo, "worktree", "prune", ok=(0, 128))
        _prune_dirs(self._spare_dir, self.root.parent)
