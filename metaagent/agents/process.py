"""Running one child process the way agents need it: own process group, limits, no leftovers.

The child gets a new session, so on timeout or cancellation the whole group (the command and
anything it started) is killed. Memory and CPU limits are set with ``setrlimit`` in the child.
Output is read in chunks as it comes and kept up to a cap (``Capped``); the rest is counted and
dropped, so a command printing gigabytes costs no more memory than its cap.
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


MB = 1024 * 1024
DEFAULT_MAX_OUTPUT_MB = 10.0
"""Stdout kept per attempt (the attempt's output); the rest is dropped with a marker."""
DEFAULT_MAX_LOG_MB = 1.0
"""Stderr kept per attempt (the attempt's log): its head and its tail."""


class Capped:
    """A stream's bytes kept up to ``limit_bytes``: the head only, or (``tail=True``) half head
    and half tail. Everything past the cap is counted in ``dropped`` and not kept."""

    __slots__ = ("_end", "_head", "_tail_limit", "_trimmed", "limit_bytes", "what")

    def __init__(self, limit_bytes: int, *, tail: bool = False, what: str = "output") -> None:
        if limit_bytes < 0:
            raise ValueError(f"limit_bytes must be >= 0, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self.what = what
        self._tail_limit = limit_bytes // 2 if tail else 0
        self._head = bytearray()
        self._end = bytearray()  # the newest bytes past the head (tail mode), up to 2x its cap
        self._trimmed = 0

    def __len__(self) -> int:
        """Bytes seen so far, kept or not."""
        return len(self._head) + len(self._end) + self._trimmed

    @property
    def dropped(self) -> int:
        """Bytes seen and not kept."""
        return self._trimmed + max(0, len(self._end) - self._tail_limit)

    def add(self, data: bytes) -> None:
        room = self.limit_bytes - self._tail_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        if not self._tail_limit:
            self._trimmed += len(data)
            return
        self._end += data
        excess = len(self._end) - self._tail_limit
        if excess > self._tail_limit:  # trimmed in bulk: amortised, not once per chunk
            del self._end[:excess]
            self._trimmed += excess

    def value(self) -> bytes:
        """What was kept, with a visible marker where bytes were dropped."""
        end = self._end
        excess = max(0, len(end) - self._tail_limit)
        dropped = self._trimmed + excess
        if not dropped:
            return bytes(self._head + end)
        marker = (
            f"\n[... {dropped:,} bytes of {self.what} dropped: limit {_mb(self.limit_bytes)}]\n"
        ).encode()
        return bytes(self._head) + marker + bytes(end[excess:])


def _mb(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n:,} bytes"


def cap_bytes(limit_mb: float, name: str) -> int:
    """``limit_mb`` as bytes; ``ValueError`` naming ``name`` unless it is >= 0 and finite."""
    if not (0 <= limit_mb < float("inf")):
        raise ValueError(f"{name} must be a non-negative number of MB, got {limit_mb}")
    return int(limit_mb * MB)


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """Per-process limits; ``None`` means no limit. ``memory_mb`` caps the data segment."""

    memory_mb: int | None = 500
    cpu_s: int | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """What a finished process left: exit status and its output streams (capped: the bytes
    dropped are counted in ``stdout_dropped`` and ``stderr_dropped`` and marked in the text)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    stdout_dropped: int = 0
    stderr_dropped: int = 0

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


_GROUPS: set[int] = set()
"""Process groups started here whose leader is not reaped yet: what ``kill_all_groups`` kills.
Process-wide because process groups are: a forced exit must not leave any behind."""


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

    def __init__(self, loop: asyncio.AbstractEventLoop, out: Capped, err: Capped) -> None:
        self.out = out
        self.err = err
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        buf = self.out if fd == 1 else self.err
        buf.add(data.encode() if isinstance(data, str) else data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once the child has exited and every pipe is closed.
        if not self.closed.done():
            self.closed.set_result(None)


SPAWNER_ENV = "METAAGENT_SPAWNER"
"""Every process metaagent starts (and, by inheritance, what those start) carries the pid of
the process that started it in this variable, so that a leftover of an orchestrator killed
with ``kill -9`` is found and stopped by the next one (``runtime.reaper``)."""


def spawn_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process started here: this one's, ``extra``, and the tag."""
    env = dict(os.environ)
    if extra:
        env.update(extra)
    env[SPAWNER_ENV] = str(os.getpid())
    return env


async def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes | None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    limits: ProcessLimits | None = None,
    max_output_bytes: int = int(DEFAULT_MAX_OUTPUT_MB * MB),
    max_log_bytes: int = int(DEFAULT_MAX_LOG_MB * MB),
    on_stderr: Callable[[bytes], None] | None = None,
) -> Completed:
    """Run ``argv`` to completion. If cancelled, kill its process group and re-raise.

    Stdout is kept up to ``max_output_bytes`` (its head), stderr up to ``max_log_bytes`` (its
    head and tail); past that, bytes are dropped and a marker says how many. ``on_stderr``
    gets the kept stderr once the process is gone, cancelled or not (a timed-out attempt's
    log). When the command exits, whatever it left running in its process group is killed too
    (a process that left the group yet holds the output pipes keeps the call waiting until it
    ends or the call is cancelled). Raises ``FileNotFoundError``/``PermissionError`` when the
    program cannot be started.
    """
    full_env = spawn_env(env)
    lim = limits or ProcessLimits()
    loop = asyncio.get_running_loop()
    out = Capped(max_output_bytes, what="output")
    err = Capped(max_log_bytes, tail=True, what="log")
    spawn = asyncio.ensure_future(
        loop.subprocess_exec(
            lambda: _Collector(loop, out, err),
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
    _GROUPS.add(pid)
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
        _GROUPS.discard(pid)
        transport.close()
        if on_stderr is not None:
            on_stderr(err.value())
    returncode = transport.get_returncode()
    assert returncode is not None
    return Completed(returncode, out.value(), err.value(), out.dropped, err.dropped)


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


def track_group(pid: int) -> None:
    """Count the process group led by ``pid`` among those ``kill_all_groups`` kills."""
    _GROUPS.add(pid)


def untrack_group(pid: int) -> None:
    _GROUPS.discard(pid)


def kill_all_groups() -> int:
    """SIGKILL every process group started here and still running; return how many were hit.
    For a forced exit, when there is no time to stop attempts in order."""
    for pid in list(_GROUPS):
        _kill_group(pid)
    return len(_GROUPS)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def log_text(data: bytes) -> str | None:
    """A captured stream as an attempt's log: decoded leniently; None when it is empty."""
    text = data.decode("utf-8", errors="replace").rstrip()
    return text or None


def tail(data: bytes, limit: int = 2000) -> str:
    """The last ``limit`` characters of a stream, decoded leniently."""
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]
