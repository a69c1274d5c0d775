"""Bubblewrap (what Claude Code and Codex themselves use on Linux): the agent sees the machine
read-only, its work directory writable, a private ``/tmp``, its own pid namespace (it cannot
see or signal other processes), no network unless ``network: true`` (not even the host's
loopback), a memory and a process cap (cgroups; memory falls back to a data rlimit where
cgroups cannot be made), and it dies with the orchestrator (``--die-with-parent``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from metaagent.sandbox.base import Prepared, SandboxSpec, SandboxUnavailable, safe_name
from metaagent.sandbox.cgroups import (
    CgroupLimits,
    cgroup_problem,
    join_argv,
    make_cgroups,
    remove_cgroups,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["BwrapSandbox"]


class BwrapSandbox:
    kind = "bwrap"

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._program: str | None = None
        self._cgroups = False  # limits set by cgroups (else memory by a data rlimit)

    def check(self) -> None:
        program = shutil.which("bwrap")
        if program is None:
            raise SandboxUnavailable("bwrap is not installed (Debian: apt-get install bubblewrap)")
        probe = [program, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--unshare-pid", "--unshare-net", "--die-with-parent", "true"]  # fmt: skip
        try:
            done = subprocess.run(probe, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"bwrap cannot run: {exc}") from exc
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip() or f"status {done.returncode}"
            raise SandboxUnavailable(
                f"bwrap cannot create its namespaces here (user namespaces disabled?): {said}"
            )
        spec = self.spec
        if spec.pids is not None or spec.memory_mb is not None:
            problem = cgroup_problem(CgroupLimits(spec.memory_mb, spec.pids))
            if problem is None:
                self._cgroups = True
            elif spec.pids is not None:
                raise SandboxUnavailable(f"pids: {spec.pids} needs a cgroup: {problem}")
        self._program = program

    def prepare(
        self,
        argv: Sequence[str],
        *,
        name: str,
        workdir: str,
        env: Mapping[str, str],
        read_only: Sequence[str] = (),
        writable: Sequence[str] = (),
    ) -> Prepared:
        assert self._program is not None, "check() first"
        spec = self.spec
        box = [self._program, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp"]  # fmt: skip
        for path in (*read_only, *_hidden_by_tmp(argv, env)):
            box += ["--ro-bind", path, path]
        for path in (*spec.writable, *writable, workdir):
            box += ["--bind", path, path]
        box += ["--chdir", workdir, "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--die-with-parent", "--cap-drop", "ALL"]  # fmt: skip
        if not spec.network:
            box.append("--unshare-net")
        for key, value in env.items():
            box += ["--setenv", key, value]
        box += ["--", *argv]
        procs: list[str] = []
        if self._cgroups:
            try:
                procs = make_cgroups(safe_name(name), CgroupLimits(spec.memory_mb, spec.pids))
            except OSError as exc:
                raise SandboxUnavailable(f"cannot create the sandbox's cgroup: {exc}") from exc
        data_mb = spec.memory_mb if spec.memory_mb is not None and not self._cgroups else None
        return Prepared(join_argv(procs, box, data_mb=data_mb), cleanup_paths=procs)

    async def cleanup(self, prepared: Prepared) -> None:
        """Remove the attempt's cgroups, waiting up to two seconds for its processes (killed
        with the sandbox's pid namespace) to be gone."""
        busy = prepared.cleanup_paths
        for _ in range(40):
            busy = remove_cgroups(busy)
            if not busy:
                return
            await asyncio.sleep(0.05)


def _hidden_by_tmp(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Directories under ``/tmp`` the program needs (its own, and those of ``PATH``), which
    the private ``/tmp`` would hide: bound back read-only (a checkout or a tool kept in a
    temporary directory, as CI machines and tests do)."""
    dirs: list[str] = []
    if argv and os.path.isabs(argv[0]):
        dirs.append(os.path.dirname(argv[0]))
    dirs += env.get("PATH", os.environ.get("PATH", "")).split(os.pathsep)
    seen: list[str] = []
    for d in dirs:
        real = os.path.realpath(d) if d else ""
        if (
            (real == "/tmp" or real.startswith("/tmp/"))
            and os.path.isdir(real)
            and real not in seen
        ):
            seen.append(real)
    return seen
