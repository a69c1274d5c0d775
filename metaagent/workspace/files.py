"""The filesystem side of a workspace: small helpers, and moving a linked worktree without a
git process (``move_checkout``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "add_line",
    "children",
    "exists",
    "make_dir",
    "move_checkout",
    "owner_alive",
    "prune_dirs",
    "same_dir",
]


def add_line(file: Path, line: str) -> None:
    file = file.resolve()
    text = file.read_text() if file.exists() else ""
    if line not in text.splitlines():
        file.parent.mkdir(parents=True, exist_ok=True)
        with file.open("a") as fh:
            fh.write(("\n" if text and not text.endswith("\n") else "") + line + "\n")


def children(d: Path) -> list[Path]:
    return sorted(d.iterdir()) if d.is_dir() else []


def exists(p: Path) -> bool:
    return p.exists()


def owner_alive(name: str) -> bool:
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


def make_dir(p: Path) -> None:
    p.mkdir(parents=True, exist_ok=True)


def prune_dirs(d: Path, upto: Path) -> None:
    """Remove ``d`` and its parents up to ``upto`` (included) while they are empty."""
    while True:
        try:
            d.rmdir()
        except OSError:
            return
        if d == upto:
            return
        d = d.parent


def same_dir(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def move_checkout(src: Path, dst: Path) -> bool:
    """Move the linked worktree ``src`` to ``dst`` as ``git worktree move`` does, without a
    git process: rename it, then point its entry in the repository
    (``GIT_COMMON_DIR/worktrees/ID/gitdir``, see gitrepository-layout(5)) at its new place.
    False, having changed nothing, for what git has to do itself: relative links, a locked
    or unknown entry."""
    try:
        link = (src / ".git").read_text()
    except OSError:
        return False
    if not link.startswith("gitdir: "):
        return False
    admin = Path(link[len("gitdir: ") :].strip())
    back = admin / "gitdir"
    try:
        points_at = back.read_text().strip()
    except OSError:
        return False
    if not (admin.is_absolute() and os.path.isabs(points_at)) or (admin / "locked").exists():
        return False
    if not same_dir(points_at, src / ".git"):
        return False
    os.rename(src, dst)
    tmp = admin / "gitdir.lock"
    tmp.write_text(os.path.realpath(dst / ".git") + "\n")
    tmp.replace(back)
    return True
