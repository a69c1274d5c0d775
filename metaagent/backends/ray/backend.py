"""The Ray backend: every agent instance is a Ray actor, placed by the cluster on a node that
has what the agent's spec asks (``ray: {num_cpus, num_gpus, memory_mb, resources,
runtime_env}``); attempts are calls of its actor.

The scheduler and the journal stay in this process; only the agents move. An actor that dies,
or whose node goes, makes its instance lost: its running attempts are journaled ``lost`` and
routed again by the scheduler, and a late answer is fenced by the attempt number, exactly as for
local agents. Heartbeats are actor pings. The connection to the cluster is made at the first
spawn (a backend's constructor does no I/O), where an unreachable cluster, or an agent whose
placement no node can hold, is a ``BackendUnavailable`` error rather than a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

import ray

from metaagent.backends.ray.actor import InstanceActor
from metaagent.backends.ray.cluster import NAMESPACE, actor_name, connect, home_tag, reap, unmet
from metaagent.core.placement import Placement
from metaagent.core.tasks import Outcome
from metaagent.errors import BackendUnavailable, VerificationFailed

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from metaagent.agents.base import AttemptContext, Runner
    from metaagent.backends.base import AttemptReport, InstanceHooks
    from metaagent.clock import Clock
    from metaagent.core.health import HealthPolicy
    from metaagent.core.instances import AgentInstance
    from metaagent.core.specs import AgentSpec

START_TIMEOUT_S = 60.0
"""An actor gets at least this long to be placed and started (a new Ray worker process, and its
``runtime_env``, can take many seconds); ``HealthPolicy.start_timeout_s`` if that is longer."""

Handle = Any  # a Ray actor handle: its methods are made at run time, so untyped here

STOP_TIMEOUT_S = 10.0  # a retired actor that has not closed its runner by then is killed


def why(exc: BaseException, limit: int = 300) -> str:
    """The first line of an error's text, cut to ``limit`` characters."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Actor:
    """The orchestrator's side of one instance's actor."""

    __slots__ = ("handle", "name", "watch")

    def __init__(self, handle: Handle, name: str) -> None:
        self.handle = handle
        self.name = name
        self.watch: asyncio.Task[None] | None = None  # its start-up, then its heartbeats


class RayBackend:
    """Agent instances as Ray actors; see the module's docstring.

    ``address``: ``None`` (``RAY_ADDRESS``, else a Ray instance started on this machine),
    ``auto`` (the cluster this machine belongs to) or the head's ``HOST:PORT``. When Ray is
    already initialised in this process, that connection is used (and left open at close).
    ``nodes`` maps each instance that started to where it runs (``IP node-id``), kept after
    it stopped; ``reaped`` names the leftover actors of a dead predecessor killed at connect;
    ``pending`` says, per spec, why its instances cannot be created now (until one starts).
    """

    name = "ray"

    def __init__(
        self,
        health: HealthPolicy,
        clock: Clock,
        workdir: str,
        hooks: InstanceHooks,
        *,
        address: str | None = None,
    ) -> None:
        self._health = health
        self._clock = clock
        self._workdir = workdir
        self._hooks = hooks
        self._address = address
        self._actors: dict[str, _Actor] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._cls: Any = None  # the Ray actor class of ``InstanceActor``
        self._owns = False  # this backend connected to Ray, so it disconnects at close
        self._tag = ""
        self._session = ""
        self._owner: dict[str, object] = {}
        self.nodes: dict[str, str] = {}
        self.workers: dict[str, object] = {}  # instance -> the pid of its actor's worker
        self.reaped: list[str] = []
        self.pending: dict[str, str] = {}  # spec -> why its instances cannot be created now

    # --- instances ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._cls is not None:
            return self._cls
        self._owns = connect(self._address)
        self._tag = home_tag(self._workdir)
        self.reaped = reap(self._tag)
        self._session = uuid.uuid4().hex[:6]  # names stay unique while reaped ones die
        job = ray.get_runtime_context().get_job_id()
        self._owner = {"host": socket.gethostname(), "pid": os.getpid(), "job": job}
        self._cls = ray.remote(InstanceActor)
        return self._cls

    def spawn(self, inst: AgentInstance) -> bool:
        """Create the instance's actor; it is ready once it has started its runner.

        When the cluster cannot be reached, or no node can hold the spec's placement, it raises
        ``BackendUnavailable`` if called where that reaches the caller (the spawns that
        ``submit`` or ``resume`` make when a run starts); elsewhere (the pool growing, an
        instance replaced) the instance is reported lost with that reason, the pool tries again
        after its back-off, and ``pending`` names the reason for the progress view.
        """
        spec = inst.spec
        try:
            cls = self._connect()
        except BackendUnavailable as exc:
            return self._refuse(inst, str(exc))
        placement = spec.placement or Placement()
        missing = unmet(placement.demand())
        if missing is not None:
            return self._refuse(inst, f"agent {spec.name!r} cannot be placed: {missing}")
        name = actor_name(self._tag, f"{self._session}-{inst.id}")
        try:
            handle = cls.options(**self._options(spec, placement, name)).remote(
                spec, inst.id, self._workdir, self._health, self._owner
            )
        except Exception as exc:  # an option Ray refuses, a runner that cannot be pickled
            return self._refuse(inst, f"agent {spec.name!r}: cannot create its actor: {exc}")
        rec = self._actors[inst.id] = _Actor(handle, name)
        rec.watch = self._start(self._open(inst.id, rec))
        return False

    def _refuse(self, inst: AgentInstance, message: str) -> bool:
        """An instance that cannot be created: raised to a caller's coroutine (``submit``);
        from a loop callback or one of this backend's own tasks (heartbeats, attempts) it is a
        lost instance instead, as raising there would reach no caller."""
        task = asyncio.current_task()
        coro = None if task is None else task.get_coro()
        ours = task in self._tasks or getattr(coro, "__qualname__", "") == "RayBackend.attempt"
        if task is not None and not ours:
            raise BackendUnavailable(message)
        self.pending[inst.spec.name] = message
        asyncio.get_running_loop().call_soon(self._hooks.on_lost, inst.id, message)
        return False

    @staticmethod
    def _options(spec: AgentSpec, p: Placement, name: str) -> dict[str, object]:
        opts: dict[str, object] = {
            "name": name,
            "namespace": NAMESPACE,
            "num_cpus": p.num_cpus or 0,
            "max_concurrency": spec.concurrency + 2,  # room for heartbeats beside the work
            "max_restarts": 0,  # a dead actor is a lost instance; the pool replaces it
            "max_task_retries": 0,
        }
        if p.num_gpus:
            opts["num_gpus"] = p.num_gpus
        if p.memory_mb:
            opts["memory"] = int(p.memory_mb * 1024 * 1024)
        if p.resources:
            opts["resources"] = dict(p.resources)
        if p.runtime_env is not None:
            opts["runtime_env"] = dict(p.runtime_env)
        return opts

    def _start(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _open(self, iid: str, rec: _Actor) -> None:
        limit = max(self._health.start_timeout_s, START_TIMEOUT_S)
        try:
            async with asyncio.timeout(limit):
                info = await rec.handle.start.remote()
        except TimeoutError:
            self._lose(iid, f"its Ray actor was not placed and started within {limit:g}s")
            return
        except ray.exceptions.RayError as exc:
            self._lose(iid, f"its Ray actor could not start: {why(exc)}")
            return
        if info.get("lost"):
            self._lose(iid, f"could not start: {info['lost']}")
            return
        self.pending.pop(str(info.get("spec")), None)
        self.nodes[iid] = f"{info.get('ip')} {str(info.get('node'))[:8]}"
        self.workers[iid] = info.get("pid")
        self._hooks.on_ready(iid)
        await self._heartbeat(iid, rec)

    async def _heartbeat(self, iid: str, rec: _Actor) -> None:
        h = self._health
        while True:
            await asyncio.sleep(h.heartbeat_interval_s)
            reason: str | None
            try:
                async with asyncio.timeout(h.heartbeat_timeout_s):
                    reason = await rec.handle.ping.remote()
            except TimeoutError:
                reason = f"no heartbeat answer within {h.heartbeat_timeout_s:g}s"
            except ray.exceptions.RayError as exc:
                reason = f"its Ray actor died: {why(exc)}"
            if reason is not None:
                self._lose(iid, reason)
                return

    def _lose(self, iid: str, reason: str) -> None:
        """The instance is lost: its actor is killed (if it lingers) and the runtime told."""
        rec = self._actors.pop(iid, None)
        if rec is None:
            return
        if rec.watch is not None and rec.watch is not asyncio.current_task():
            rec.watch.cancel()
        _kill(rec.handle)
        self._hooks.on_lost(iid, reason)

    def terminate(self, inst: AgentInstance, *, lost: bool) -> None:
        rec = self._actors.pop(inst.id, None)
        if rec is None:
            if not lost:
                self._hooks.on_stopped(inst.id)
            return
        if rec.watch is not None:
            rec.watch.cancel()
        if lost:
            _kill(rec.handle)
            return
        self._start(self._retire(inst.id, rec))

    async def _retire(self, iid: str, rec: _Actor) -> None:
        await _stop(rec.handle)
        self._hooks.on_stopped(iid)

    def kill(self, runner: Runner, instance: str, reason: str) -> None:
        rec = self._actors.pop(instance, None)
        if rec is not None:
            if rec.watch is not None:
                rec.watch.cancel()
            _kill(rec.handle)

    async def aclose(self, instances: list[AgentInstance]) -> None:
        """Stop start-ups and heartbeats, retire every actor (its runner closed, then killed),
        wait for retirements under way; disconnect from Ray if this backend connected."""
        watches = [r.watch for r in self._actors.values() if r.watch is not None]
        for w in watches:
            w.cancel()
        recs, self._actors = dict(self._actors), {}
        await asyncio.gather(*watches, return_exceptions=True)
        started = [r.handle for iid, r in recs.items() if iid in self.nodes]
        for iid, r in recs.items():
            if iid not in self.nodes:  # never started (still being placed): nothing to close
                _kill(r.handle)
        await asyncio.gather(*map(_stop, started), *self._tasks, return_exceptions=True)
        if self._owns and ray.is_initialized():
            ray.shutdown()
            self._owns = False

    # --- attempts -----------------------------------------------------------------------------

    async def attempt(
        self,
        ctx: AttemptContext,
        runner: Runner,
        limit_s: float | None,
        report: AttemptReport,
    ) -> None:
        """One call of the instance's actor, which runs the attempt within ``limit_s`` on its
        node; a cancel cancels the call (the actor stops the attempt and its processes) and
        ends once the call has ended."""
        rec = self._actors.get(ctx.instance)
        if rec is None:
            report.ended(ctx, Outcome.LOST, None, f"instance {ctx.instance} is gone")
            return
        ref: Any = rec.handle.run.remote(ctx, limit_s)
        try:
            value, output, error, log = await ref
        except asyncio.CancelledError:
            ray.cancel(ref)
            this = asyncio.current_task()
            if this is not None and this.cancelling() < 2:  # not also the second cancel, at close
                # Its slot stays taken until the actor has really stopped the attempt.
                await asyncio.wait([asyncio.ensure_future(_settled(ref))])
            raise
        except ray.exceptions.RayActorError as exc:
            reason = f"its Ray actor died: {why(exc)}"
            self._lose(ctx.instance, reason)  # its attempts are lost and routed again
            report.ended(ctx, Outcome.LOST, None, reason)  # fenced: no longer current
            return
        except ray.exceptions.RayError as exc:  # the answer could not come back
            report.ended(ctx, Outcome.ERROR, None, f"{type(exc).__name__}: {why(exc)}")
            return
        ctx.log = log
        outcome = Outcome(value)
        if outcome is Outcome.SUCCEEDED and ctx.task.verify is not None:
            try:
                await report.check(ctx.task, output)
            except VerificationFailed as exc:
                outcome, error = Outcome.VERIFY_FAILED, str(exc)
        report.ended(ctx, outcome, output, error)


def _kill(handle: Handle) -> None:
    with contextlib.suppress(ValueError, ray.exceptions.RayError):  # gone already
        ray.kill(handle, no_restart=True)


async def _stop(handle: Handle) -> None:
    """Retire an actor: its runner closed (within ``STOP_TIMEOUT_S``), then the actor killed."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await handle.stop.remote()
    except (TimeoutError, ray.exceptions.RayError):
        pass  # dead already, or stuck: killed below
    _kill(handle)


async def _settled(ref: Any) -> None:
    """Wait until a Ray call has ended, however it ended."""
    with contextlib.suppress(Exception):
        await ref
