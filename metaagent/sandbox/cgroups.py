"""Per-attempt cgroups for a sandbox's process and memory limits (cgroup v1 or v2).

A limit on processes needs the ``pids`` controller: ``RLIMIT_NPROC`` counts a user's
processes machine-wide and does not bind root, so it cannot cap one sandbox. The command joins
its cgroups before it starts (``join_argv``), so everything it forks is counted.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "cgroup_problem", "join_argv", "make_cgroups", "remove_cgroups"]

ROOT = Path("/sys/fs/cgroup")
GROUP = "metaagent"

# Joins every cgroup file named before "--", then runs the rest: a shell, so no interpreter
# starts per attempt. Status 125 when a cgroup cannot be joined.
_JOIN = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    memory_mb: int | None
    pids: int | None


def _v2() -> bool:
    return (ROOT / "cgroup.controllers").is_file()


def _dirs(name: str, limits: CgroupLimits) -> list[tuple[Path, dict[str, str]]]:
    """The cgroup directories of one sandbox, with the limit files to write in each."""
    mem = None if limits.memory_mb is None else str(limits.memory_mb * 1024 * 1024)
    if _v2():
        files = {}
        if limits.pids is not None:
            files["pids.max"] = str(limits.pids)
        if mem is not None:
            files["memory.max"] = mem
            files["memory.swap.max"] = "0"
        return [(ROOT / GROUP / name, files)]
    out = []
    if limits.pids is not None:
        out.append((ROOT / "pids" / GROUP / name, {"pids.max": str(limits.pids)}))
    if mem is not None:
        out.append((ROOT / "memory" / GROUP / name, {"memory.limit_in_bytes": mem}))
    return out


def _enable_v2() -> None:
    """Delegate the pids and memory controllers down to ``/sys/fs/cgroup/metaagent``."""
    for parent in (ROOT, ROOT / GROUP):
        parent.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            (parent / "cgroup.subtree_control").write_text("+pids +memory")


def make_cgroups(name: str, limits: CgroupLimits) -> list[str]:
    """Create the cgroups of one sandbox with its limits; return their ``cgroup.procs`` files.
    Raises ``OSError`` when they cannot be made."""
    dirs = _dirs(name, limits)
    if dirs and _v2():
        _enable_v2()
    procs = []
    for d, files in dirs:
        d.mkdir(parents=True, exist_ok=True)
        try:
            for fname, value in files.items():
                if fname == "memory.swap.max" and not (d / fname).exists():
                    continue
                (d / fname).write_text(value)
        except OSError:
            remove_cgroups([str(d / "cgroup.procs")])
            raise
        procs.append(str(d / "cgroup.procs"))
    return procs


def remove_cgroups(procs: list[str]) -> list[str]:
    """Remove cgroups made by ``make_cgroups`` (empty once their processes are gone); return
    those still busy (processes dying), to try again."""
    busy = []
    for p in procs:
        try:
            os.rmdir(Path(p).parent)
        except FileNotFoundError:
            pass
        except OSError:
            busy.append(p)
    return busy


def join_argv(procs: list[str], argv: list[str], *, data_mb: int | None = None) -> list[str]:
    """``argv`` started inside the cgroups; with ``data_mb`` also under that data rlimit."""
    if not procs and data_mb is None:
        return argv
    script = _JOIN if data_mb is None else f"ulimit -d {data_mb * 1024} || exit 125; {_JOIN}"
    return ["/bin/sh", "-c", script, "metaagent-sandbox", *procs, "--", *argv]


def cgroup_problem(limits: CgroupLimits) -> str | None:
    """Why these limits cannot be set by cgroups here, or ``None``: a probe group is made,
    limited and removed."""
    probe = f"probe-{os.getpid()}"
    try:
        procs = make_cgroups(probe, limits)
    except OSError as exc:
        kind = "v2" if _v2() else "v1"
        return f"cannot create a cgroup ({kind}) under {ROOT} with these limits: {exc}"
    remove_cgroups(procs)
    return None
