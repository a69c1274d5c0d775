"""Long-lived command agents: one process per agent instance, JSON lines both ways.

Each instance is a process started once. It reads one JSON request per line on stdin and
answers one JSON line per request on stdout, matched by ``id``:

- ``{"type": "task", "id": ..., "task": {...}}`` -> ``{"id": ..., "ok": true, "output": ...}``
  or ``{"id": ..., "ok": false, "error": "..."}``
- ``{"type": "ping", "id": ...}`` -> ``{"id": ..., "type": "pong"}`` (heartbeats)
- ``{"type": "shutdown"}``: finish and exit.

An attempt that is cancelled or times out cannot be stopped alone inside a shared process, so
the process is killed: the instance is then lost and its other work is routed again.

A reply line longer than ``max_output_mb`` breaks the protocol (the instance is killed). What
the process writes on stderr while an attempt is in flight is that attempt's log, up to
``max_log_mb`` (head and tail); attempts running at once on one instance share those lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.agents.command import expand
from metaagent.agents.process import (
    DEFAULT_MAX_LOG_MB,
    DEFAULT_MAX_OUTPUT_MB,
    Capped,
    ProcessLimits,
    _preexec,
    cap_bytes,
    log_text,
    spawn_env,
    track_group,
    untrack_group,
)
from metaagent.errors import AgentCrash, AgentFailure

if TYPE_CHECKING:
    from metaagent.agents.base import AttemptContext

_ENVELOPE = 64 * 1024  # room for a reply's id and keys around an output of the cap
_STDERR_GRACE_S = 1.0  # how long a dead agent's last stderr lines are waited for

ExitCallback = Callable[[str, str], None]
"""Called with (instance id, reason) when an instance's process ends unasked."""


@dataclass(slots=True, eq=False)
class _Instance:
    id: str
    proc: asyncio.subprocess.Process
    pending: dict[str, asyncio.Future[dict[str, object]]] = field(default_factory=dict)
    stderr_tail: list[str] = field(default_factory=list)
    logs: set[Capped] = field(default_factory=set)  # the logs of the attempts in flight
    reader: asyncio.Task[None] | None = None
    err_reader: asyncio.Task[None] | None = None
    closing: bool = False
    dead: str | None = None


class PersistentCommandRunner:
    """A command started once per agent instance, serving many attempts over JSON lines.

    ``argv`` may use ``{instance}`` and ``{workdir}``. Limits apply to the whole process.
    """

    kind = "persistent"

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        limits: ProcessLimits | None = None,
        stop_grace_s: float = 2.0,
        max_output_mb: float = DEFAULT_MAX_OUTPUT_MB,
        max_log_mb: float = DEFAULT_MAX_LOG_MB,
    ) -> None:
        if isinstance(argv, str) or not argv:
            raise ValueError("argv must be a non-empty list of strings")
        self.max_output_mb = max_output_mb
        self.max_log_mb = max_log_mb
        self._line_limit = cap_bytes(max_output_mb, "max_output_mb") + _ENVELOPE
        self._log_limit = cap_bytes(max_log_mb, "max_log_mb")
        self.argv = tuple(argv)
        self.cwd = cwd
        self.env = dict(env or {})
        self.limits = limits or ProcessLimits()
        self.stop_grace_s = stop_grace_s
        self._instances: dict[str, _Instance] = {}
        self._ids = itertools.count(1)

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self, instance: str, workdir: str, on_exit: ExitCallback | None = None) -> None:
        """Start the process of ``instance``. Raises ``AgentFailure`` if it cannot start."""
        values = {"instance": instance, "workdir": workdir}
        argv = [expand(a, values) for a in self.argv]
        env = spawn_env(self.env)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=expand(self.cwd, values) if self.cwd else workdir,
                env=env,
                start_new_session=True,
                preexec_fn=_preexec(self.limits),
                limit=self._line_limit,
            )
        except OSError as exc:
            raise AgentFailure(f"cannot start {argv[0]!r}: {exc}") from exc
        track_group(proc.pid)
        inst = _Instance(instance, proc)
        self._instances[instance] = inst
        loop = asyncio.get_running_loop()
        inst.reader = loop.create_task(self._read(inst, on_exit))
        inst.err_reader = loop.create_task(self._read_stderr(inst))

    def pid(self, instance: str) -> int | None:
        inst = self._instances.get(instance)
        return None if inst is None else inst.proc.pid

    def alive(self, instance: str) -> bool:
        inst = self._instances.get(instance)
        return inst is not None and inst.dead is None and inst.proc.returncode is None

    async def close(self, instance: str) -> None:
        """Stop the instance: ask it to shut down, then SIGTERM (and SIGCONT, so a stopped
        process gets it), then SIGKILL, waiting ``stop_grace_s`` after each step."""
        inst = self._instances.pop(instance, None)
        if inst is None:
            return
        inst.closing = True
        proc = inst.proc
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.write(b'{"type": "shutdown"}\n')
                proc.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                    if sig is signal.SIGTERM:
                        os.killpg(proc.pid, signal.SIGCONT)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), self.stop_grace_s)
                break
            except TimeoutError:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        untrack_group(proc.pid)
        for task in (inst.reader, inst.err_reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_pending(inst, "the agent was stopped")

    def kill(self, instance: str, reason: str) -> None:
        """Kill the instance's process group at once (a lost or stuck agent)."""
        inst = self._instances.get(instance)
        if inst is None:
            return
        inst.dead = inst.dead or reason
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(inst.proc.pid, signal.SIGKILL)

    # --- requests -----------------------------------------------------------------------------

    async def run(self, ctx: AttemptContext) -> object:
        inst = self._instances.get(ctx.instance)
        if inst is None or inst.dead is not None:
            raise AgentCrash(f"agent instance {ctx.instance} is not running")
        log = Capped(self._log_limit, tail=True, what="log")
        inst.logs.add(log)
        try:
            reply = await self._request(inst, {"type": "task", "task": ctx.to_json()})
        except asyncio.CancelledError:
            # The attempt cannot be stopped alone inside a shared process: stop the process.
            self.kill(ctx.instance, f"attempt of {ctx.task.id} was stopped")
            raise
        finally:
            inst.logs.discard(log)
            ctx.log = log_text(log.value())
        if reply.get("ok") is True:
            return reply.get("output")
        raise AgentFailure(str(reply.get("error") or "the agent reported failure"))

    async def ping(self, instance: str, timeout_s: float) -> bool:
        """Heartbeat: true when the instance answered within ``timeout_s``."""
        inst = self._instances.get(instance)
        if inst is None or inst.dead is not None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._request(inst, {"type": "ping"})
        except (TimeoutError, AgentCrash):
            return False
        return reply.get("type") == "pong"

    async def _request(self, inst: _Instance, message: dict[str, object]) -> dict[str, object]:
        rid = str(next(self._ids))
        message["id"] = rid
        fut: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        inst.pending[rid] = fut
        stdin = inst.proc.stdin
        assert stdin is not None
        # A write that fails means the process is gone or going: the answer is then the
        # reader's, which fails every pending request with the exit status once the pipe
        # closes (a process that closed its stdin yet lives is killed for missing heartbeats).
        with contextlib.suppress(ConnectionError, RuntimeError):
            stdin.write(json.dumps(message, default=str).encode() + b"\n")
            await stdin.drain()
        try:
            return await fut
        finally:
            inst.pending.pop(rid, None)

    async def _read(self, inst: _Instance, on_exit: ExitCallback | None) -> None:
        stdout = inst.proc.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # a line past the stream's limit: the protocol is broken
                self.kill(inst.id, f"sent a line longer than {self.max_output_mb:g} MB")
                line = await stdout.read()  # drain until the killed process's pipe closes
                continue
            if not line:
                break
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # a stray print is not a reply
            if not isinstance(reply, dict):
                continue
            fut = inst.pending.get(str(reply.get("id")))
            if fut is not None and not fut.done():
                fut.set_result(reply)
        code = await inst.proc.wait()
        untrack_group(inst.proc.pid)
        if inst.err_reader is not None and not inst.dead:
            # What it wrote to stderr before it died says why: read to its end (bounded, as
            # a child it left behind may hold the pipe open).
            await asyncio.wait([inst.err_reader], timeout=_STDERR_GRACE_S)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        tail = " | ".join(inst.stderr_tail[-5:])
        reason = inst.dead or f"agent process {how}" + (f": {tail}" if tail else "")
        inst.dead = reason
        self._fail_pending(inst, reason)
        if inst.closing:
            return
        if self._instances.get(inst.id) is inst:
            del self._instances[inst.id]  # nobody will close it: its process is gone
        if inst.err_reader is not None:
            inst.err_reader.cancel()
        if on_exit is not None:
            on_exit(inst.id, reason)

    async def _read_stderr(self, inst: _Instance) -> None:
        stderr = inst.proc.stderr
        assert stderr is not None
        while True:
            try:
                line = await stderr.readline()
            except ValueError:  # a line past the stream's limit: its start was dropped
                line = f"[a stderr line longer than {self._line_limit:,} bytes was cut]\n".encode()
            if not line:
                return
            for log in inst.logs:
                log.add(line)
            inst.stderr_tail.append(line.decode("utf-8", "replace").rstrip())
            del inst.stderr_tail[:-20]

    @staticmethod
    def _fail_pending(inst: _Instance, reason: str) -> None:
        for fut in inst.pending.values():
            if not fut.done():
                fut.set_exception(AgentCrash(reason))
        inst.pending.clear()

    def describe(self) -> dict[str, object]:
        return {
            "type": self.kind,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "memory_limit_mb": self.limits.memory_mb,
        }
