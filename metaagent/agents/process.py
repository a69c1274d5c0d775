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
import subprocess
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


class _Collector(asyncio.SubprocessProtocol):
    """Gathers a child's output and tells apart "the child exited" from "its pipes closed".

    A command may exit while something it started still holds its stdout; waiting for the
    pipes alone would then hang until that leftover ends.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        buf = self.out if fd == 1 else self.err
        buf.extend(data.encode() if isinstance(data, str) else data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once the child has exited and every pipe is closed.
        if not self.closed.done():
            self.closed.set_result(None)


async def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes | None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    limits: ProcessLimits | None = None,
) -> Completed:
    """Run ``argv`` to completion. If cancelled, kill its process group and re-raise.

    When the command exits, whatever it left running in its process group is killed too (a
    process that left the group yet holds the output pipes keeps the call waiting until it ends
    or the call is cancelled). Raises ``FileNotFoundError``/``PermissionError`` when the
    program cannot be started.
    """
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    lim = limits or ProcessLimits()
    loop = asyncio.get_running_loop()
    spawn = asyncio.ensure_future(
        loop.subprocess_exec(
            lambda: _Collector(loop),
            *argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
            preexec_fn=_preexec(lim) if (lim.memory_mb or lim.cpu_s) else None,
        )
    )
    try:
        # The command runs before its pipes are connected; a cancel meanwhile must not leave
        # it (and what it started) behind, as asyncio's own clean-up would.
        transport, proto = await asyncio.shield(spawn)
    except BaseException:
        spawn.add_done_callback(_stop_spawned)
        # Wait until it is killed and reaped, without letting a second cancel stop us.
        with contextlib.suppress(BaseException):
            await asyncio.shield(spawn)
            await asyncio.shield(spawn.result()[1].exited)
        raise
    pid = transport.get_pid()
    try:
        if stdin is not None:
            pipe = transport.get_pipe_transport(0)
            assert isinstance(pipe, asyncio.WriteTransport)
            # Buffered by the loop; a child that exits without reading it is not an error.
            pipe.write(stdin)
            pipe.close()
        # Shielded: a cancel must not cancel these futures, the clean-up below waits on one.
        await asyncio.shield(proto.exited)
        # Anything the command started and left running dies with the attempt; that also
        # closes the pipes such leftovers held, so the output below is complete.
        _kill_group(pid)
        await asyncio.shield(proto.closed)
    except BaseException:
        _kill_group(pid)
        if transport.get_returncode() is None:
            # In case the command left its group; not transport.kill(), whose poll() could
            # reap the child behind the child watcher's back.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Wait until it is reaped, without letting a second cancel stop us.
        with contextlib.suppress(BaseException):
            await asyncio.shield(proto.exited)
        raise
    finally:
        transport.close()
    returncode = transport.get_returncode()
    assert returncode is not None
    return Completed(returncode, bytes(proto.out), bytes(proto.err))


def _stop_spawned(
    spawn: asyncio.Future[tuple[asyncio.SubprocessTransport, _Collector]],
) -> None:
    """Kill the process group of a spawn whose caller was cancelled while it started."""
    if spawn.cancelled() or spawn.exception() is not None:
        return
    transport, proto = spawn.result()
    pid = transport.get_pid()
    _kill_group(pid)
    if transport.get_returncode() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Closed once reaped: closing a live child's transport would poll() (reap) it itself.
    proto.exited.add_done_callback(lambda _: transport.close())


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def tail(data: bytes, limit: int = 2000) -> str:
    """The last ``limit`` characters of a stream, decoded leniently."""
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]
