"""Running one child process the way agents need it: own process group, limits, no leftovers.

The child gets a new session, so on timeout or cancellation the whole group (the command and
anything it started) is killed. Memory and CPU limits are set with ``setrlimit`` in the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """Per-process limits; ``None`` means no limit. ``memory_mb`` caps the data segment."""

    memory_mb: int | None = 500
    cpu_s: int | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """What a finished process left: exit status and its output streams."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


_PR_SET_PDEATHSIG = 1


def _libc_prctl() -> Callable[[int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[[int, int], int] = libc.prctl
    return prctl


_prctl = _libc_prctl() if sys.platform.startswith("linux") else None


def _preexec(limits: ProcessLimits) -> Callable[[], None]:
    def apply() -> None:
        if _prctl is not None:
            # If the orchestrator dies (even by SIGKILL), its agents' processes die with it,
            # so a resumed run never races a stale attempt.
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if limits.memory_mb is not None:
            cap = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
        if limits.cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))

    return apply


async def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes | None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    limits: ProcessLimits | None = None,
) -> Completed:
    """Run ``argv`` to completion. If cancelled, kill its process group and re-raise.

    Raises ``FileNotFoundError``/``PermissionError`` when the program cannot be started.
    """
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    lim = limits or ProcessLimits()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=full_env,
        start_new_session=True,
        preexec_fn=_preexec(lim),
    )
    try:
        out, err = await proc.communicate(stdin)
    except BaseException:
        _kill_group(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        # Reap the child so no zombie is left behind, without letting a second cancel stop us.
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    # Anything the command started and left running dies with the attempt.
    _kill_group(proc.pid)
    assert proc.returncode is not None
    return Completed(proc.returncode, out, err)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def tail(data: bytes, limit: int = 2000) -> str:
    """The last ``limit`` characters of a stream, decoded leniently."""
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]
