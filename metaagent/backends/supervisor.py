"""Starting, watching and stopping agent instances: the asyncio side of the pool.

Stateless runners (functions, one process per attempt) are ready at once. Runners with a life
of their own (``open``/``close``/``ping``, such as ``PersistentCommandRunner``) are started
here, watched by heartbeats and a memory check, and reported lost when they die, stop
answering (a stuck or SIGSTOPped process), or grow past their memory limit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from metaagent.clock import Clock
    from metaagent.core.health import HealthPolicy
    from metaagent.core.instances import AgentInstance


@runtime_checkable
class LongLivedRunner(Protocol):
    """A runner whose instances are processes or sessions of their own."""

    def open(
        self, instance: str, workdir: str, on_exit: Callable[[str, str], None] | None = None
    ) -> Awaitable[None]: ...

    def close(self, instance: str) -> Awaitable[None]: ...

    def ping(self, instance: str, timeout_s: float) -> Awaitable[bool]: ...

    def kill(self, instance: str, reason: str) -> None: ...

    def pid(self, instance: str) -> int | None: ...


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (Linux ``/proc``), or None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


class Supervisor:
    """Owns the background work of agent instances (start-up, heartbeats, shutdown).

    Every task it starts is tracked and cancelled by ``aclose``.
    """

    def __init__(
        self,
        health: HealthPolicy,
        clock: Clock,
        workdir: str,
        *,
        on_ready: Callable[[str], None],
        on_lost: Callable[[str, str], None],
        on_stopped: Callable[[str], None],
    ) -> None:
        self.health = health
        self.clock = clock
        self.workdir = workdir
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._on_stopped = on_stopped
        self._tasks: set[asyncio.Task[None]] = set()  # start-ups, heartbeats, closes
        self._watch: dict[str, asyncio.Task[None]] = {}
        self._opening: dict[str, asyncio.Task[None]] = {}

    def _start(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def spawn(self, inst: AgentInstance) -> bool:
        """Start ``inst``. True when it is ready at once (a stateless runner)."""
        runner = inst.spec.runner
        if not isinstance(runner, LongLivedRunner):
            return True
        task = self._opening[inst.id] = self._start(self._open(inst, runner))
        task.add_done_callback(lambda _: self._opening.pop(inst.id, None))
        return False

    async def _open(self, inst: AgentInstance, runner: LongLivedRunner) -> None:
        try:
            await runner.open(inst.id, self.workdir, self._exited)
        except Exception as exc:  # a start-up failure is a lost instance, reported with why
            self._on_lost(inst.id, f"could not start: {exc}")
            return
        # Ready only once it has answered: a process that starts and then crashes or hangs
        # must not take (and burn the attempts of) tasks.
        limit = self.health.start_timeout_s
        if not await runner.ping(inst.id, limit):
            self._lose(inst.id, runner, f"no answer to its first heartbeat within {limit:g}s")
            return
        self._on_ready(inst.id)
        self._watch[inst.id] = self._start(self._heartbeat(inst, runner))

    def _exited(self, iid: str, reason: str) -> None:
        self._stop_watch(iid)
        self._on_lost(iid, reason)

    def _stop_watch(self, iid: str) -> None:
        watch = self._watch.pop(iid, None)
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()

    async def _heartbeat(self, inst: AgentInstance, runner: LongLivedRunner) -> None:
        h = self.health
        limit = getattr(getattr(runner, "limits", None), "memory_mb", None)
        while True:
            await asyncio.sleep(h.heartbeat_interval_s)
            pid = runner.pid(inst.id)
            if limit is not None and pid is not None:
                rss = rss_mb(pid)
                if rss is not None and rss > limit:
                    self._lose(inst.id, runner, f"memory limit exceeded: {rss:.0f} MB > {limit} MB")
                    return
            if not await runner.ping(inst.id, h.heartbeat_timeout_s):
                self._lose(
                    inst.id, runner, f"no heartbeat answer within {h.heartbeat_timeout_s:g}s"
                )
                return

    def _lose(self, iid: str, runner: LongLivedRunner, reason: str) -> None:
        self._watch.pop(iid, None)
        runner.kill(iid, reason)
        self._on_lost(iid, reason)

    def terminate(self, inst: AgentInstance, *, lost: bool) -> None:
        """Stop ``inst`` (it was retired, or declared lost and must not linger)."""
        self._stop_watch(inst.id)
        runner = inst.spec.runner
        if not isinstance(runner, LongLivedRunner):
            if not lost:
                self._on_stopped(inst.id)
            return
        if lost:
            runner.kill(inst.id, "declared lost")
        self._start(self._close(inst.id, runner, lost))

    async def _close(self, iid: str, runner: LongLivedRunner, lost: bool) -> None:
        await runner.close(iid)
        if not lost:
            self._on_stopped(iid)

    async def aclose(self, instances: list[AgentInstance]) -> None:
        """Stop heartbeats and start-ups, then every long-lived instance; wait for all of it.

        Closes already under way (instances retired when idle) are waited for, not cancelled:
        cancelling one could leave its process running.
        """
        stopping = [*self._watch.values(), *self._opening.values()]
        self._watch.clear()
        for task in stopping:
            task.cancel()
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)
        closing = [
            i.spec.runner.close(i.id)
            for i in instances
            if isinstance(i.spec.runner, LongLivedRunner)
        ]
        await asyncio.gather(*closing, *self._tasks, return_exceptions=True)
