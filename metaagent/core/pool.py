"""The agent pool: instances of each spec, their life, health and limits. Pure.

The pool owns every ``AgentInstance`` and keeps the router's index of free slots in step with
their states. It decides spawns and terminations (through the ``scaling`` policy), restarts of
lost instances (with jittered back-off, so a poison task cannot cause a respawn storm), the
circuit breaker (quarantine after consecutive failures, a single probe after a back-off) and
per-spec rate limits.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.decisions import (
    Decision,
    QuarantineAgent,
    ScaleResources,
    SpawnAgent,
    TerminateAgent,
)
from metaagent.core.instances import AgentInstance, AgentState
from metaagent.core.scaling import InstanceView, PoolPolicy, Smoothed, SpecView, next_change, plan
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping

    from metaagent.core.routing import Router
    from metaagent.core.specs import AgentSpec


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Heartbeats, circuit breaker and restart back-off. Units are in the names."""

    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 2.0  # no answer this long: the instance is lost
    breaker_failures: int = 3  # consecutive failed attempts that quarantine an instance
    breaker_backoff_s: float = 5.0
    breaker_backoff_max_s: float = 120.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    restart_jitter: float = 0.5  # fraction of a delay added at random
    start_timeout_s: float = 10.0  # a new instance must answer its first heartbeat by then


@dataclass(slots=True, eq=False)
class SpecPool:
    """One spec's instances and bookkeeping."""

    spec: AgentSpec
    min_instances: int
    max_instances: int
    instances: dict[str, AgentInstance] = field(default_factory=dict)
    next_n: int = 1
    last_action_at: float = -math.inf
    last_shrink_at: float = -math.inf
    hold_until: float = -math.inf  # no spawn before this: the back-off after a loss
    losses: int = 0  # consecutive losses, for the restart back-off
    respawn_due: int = 0  # restarts scheduled and not yet made
    calls: deque[float] = field(default_factory=deque)  # attempt starts in the last minute
    throttled_until: float | None = None
    busy: Smoothed = field(default_factory=Smoothed)  # attempts its instances run

    @property
    def live(self) -> int:
        return sum(1 for i in self.instances.values() if i.state is not AgentState.LOST)


class Pool:
    """All agent instances, by spec. Methods take ``now`` and return decisions."""

    def __init__(
        self,
        router: Router,
        policy: PoolPolicy,
        health: HealthPolicy,
        rng: random.Random,
        *,
        max_concurrency: int | None = None,
        capability_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.router = router
        self.policy = policy
        self.health = health
        self.rng = rng
        # The concurrency limits: the pool does not grow past what they let run.
        self.max_concurrency = max_concurrency
        self.capability_limits = dict(capability_limits or {})
        self.specs: dict[str, SpecPool] = {}
        self.instances: dict[str, AgentInstance] = {}
        self.retired: list[AgentInstance] = []  # lost or stopped, kept for utilisation figures
        self._timers: list[tuple[float, int, str, str]] = []
        self._elastic = False  # some spec may grow or shrink
        self._seq = 0
        self._issued: set[str] = set()  # every instance id given out: a restart gets a new one
        self._offered: set[str] = set()  # capabilities of every spec
        self._ticked = -math.inf  # ``now`` of the last tick
        self._ticked_depth: dict[str, int] = {}  # the queue depths it saw
        self._depth_avg: dict[str, Smoothed] = {}  # queue depths with their time-averages

    # --- specs and instances ------------------------------------------------------------------

    def add_spec(
        self, spec: AgentSpec, now: float, *, min_instances: int = 1, max_instances: int = 1
    ) -> list[Decision]:
        """Register a spec and decide to spawn its ``min_instances``."""
        if spec.name in self.specs:
            raise WorkflowError(f"duplicate agent {spec.name!r}", where=f"agent {spec.name!r}")
        if not 0 <= min_instances <= max_instances or max_instances < 1:
            raise WorkflowError(
                f"need 0 <= min_instances ({min_instances}) <= max_instances ({max_instances})"
                " and max_instances >= 1",
                where=f"agent {spec.name!r}",
            )
        self.specs[spec.name] = SpecPool(spec, min_instances, max_instances)
        self._offered.update(spec.capabilities)
        self._elastic = self._elastic or max_instances > min_instances
        out: list[Decision] = []
        for _ in range(min_instances):
            inst = self._new_instance(self.specs[spec.name], now, AgentState.STARTING)
            out.append(SpawnAgent(now, None, None, "min_instances", spec.name, inst.id))
        return out

    def add_instance(
        self, spec: AgentSpec, now: float, instance_id: str | None = None
    ) -> AgentInstance:
        """Register a ready instance directly (no spawn decision)."""
        iid = instance_id or spec.name
        if iid in self._issued:
            raise WorkflowError(f"duplicate agent instance {iid!r}", where=f"agent {spec.name!r}")
        sp = self.specs.get(spec.name)
        if sp is None:
            sp = self.specs[spec.name] = SpecPool(spec, 0, 0)
            self._offered.update(spec.capabilities)
        # A pool built by hand has a fixed size: the scaling policy leaves it alone.
        sp.min_instances += 1
        sp.max_instances += 1
        return self._new_instance(sp, now, AgentState.READY, iid)

    def _new_instance(
        self, sp: SpecPool, now: float, state: AgentState, iid: str | None = None
    ) -> AgentInstance:
        if iid is None:
            # Ids are never reused, so nothing said of a lost instance (a late exit notice, a
            # late result) can be taken for its replacement's.
            iid = sp.spec.name
            if sp.max_instances > 1 or iid in self._issued:
                iid = f"{sp.spec.name}#{sp.next_n}"
            while iid in self._issued:
                sp.next_n += 1
                iid = f"{sp.spec.name}#{sp.next_n}"
            sp.next_n += 1
        self._issued.add(iid)
        inst = AgentInstance(iid, sp.spec, sp.spec.concurrency, state=state, started_at=now,
                             idle_since=now)  # fmt: skip
        if state is AgentState.READY:
            inst.ready_at = now
        sp.instances[iid] = inst
        self.instances[iid] = inst
        self.router.add(inst)
        return inst

    def capabilities(self) -> set[str]:
        """Every capability some spec offers (whether or not an instance is live now)."""
        return self._offered

    def set_state(self, inst: AgentInstance, state: AgentState) -> None:
        """Change an instance's state, keeping the router's free-slot counts right."""
        before = inst.free
        inst.state = state
        delta = inst.free - before
        if delta:
            self.router.adjust_free(inst, delta)

    def ready(self, iid: str, now: float) -> None:
        """A spawned instance has started and takes work from now on."""
        inst = self.instances.get(iid)
        if inst is None or inst.state is not AgentState.STARTING:
            return
        inst.idle_since = now
        inst.ready_at = now
        self.set_state(inst, self._open_state(inst))

    def _open_state(self, inst: AgentInstance) -> AgentState:
        """The state of an instance that may take work: throttled while its spec's rate is spent."""
        throttled = self.specs[inst.spec.name].throttled_until is not None
        return AgentState.THROTTLED if throttled else AgentState.READY

    def lost(self, iid: str, now: float, reason: str) -> list[Decision]:
        """An instance died or stopped answering; restart it if the pool needs it."""
        inst = self.instances.get(iid)
        if inst is None or inst.state is AgentState.LOST:
            return []
        self.set_state(inst, AgentState.LOST)
        self.router.remove(inst)
        sp = self.specs[inst.spec.name]
        del sp.instances[iid]
        del self.instances[iid]
        inst.stopped_at = now
        self.retired.append(inst)
        sp.losses += 1
        out: list[Decision] = [
            TerminateAgent(now, None, None, f"lost: {reason}", inst.spec.name, iid, lost=True)
        ]
        delay = min(
            self.health.restart_backoff_max_s,
            self.health.restart_backoff_s * 2.0 ** (sp.losses - 1),
        )
        delay += delay * self.health.restart_jitter * self.rng.random()
        # Growth waits out the same back-off: a spec whose instances die at start (a bad
        # command, a poison task) must not be spawned again at every decision round.
        sp.hold_until = now + delay
        if sp.live + sp.respawn_due < sp.min_instances:
            sp.respawn_due += 1
            self._timer(now + delay, "respawn", sp.spec.name)
        return out

    def stopped(self, iid: str, now: float) -> None:
        """A terminated instance has exited."""
        inst = self.instances.pop(iid, None)
        if inst is None:
            return
        if inst.stopped_at is None:  # a drained instance offered no slots since its terminate
            inst.stopped_at = now
        self.retired.append(inst)
        self.set_state(inst, AgentState.STOPPED)
        self.router.remove(inst)
        self.specs[inst.spec.name].instances.pop(iid, None)

    # --- health and limits --------------------------------------------------------------------

    def on_start(self, inst: AgentInstance, now: float) -> None:
        """An attempt started on ``inst``: apply the spec's rate limit."""
        rate = inst.spec.rate_per_min
        if rate is None:
            return
        sp = self.specs[inst.spec.name]
        calls = sp.calls
        calls.append(now)
        while calls and calls[0] <= now - 60.0:
            calls.popleft()
        if len(calls) >= rate and sp.throttled_until is None:
            sp.throttled_until = calls[0] + 60.0
            for i in sp.instances.values():
                if i.state is AgentState.READY:
                    self.set_state(i, AgentState.THROTTLED)
            self._timer(sp.throttled_until, "unthrottle", sp.spec.name)

    def on_success(self, inst: AgentInstance) -> None:
        inst.consecutive_failures = 0
        inst.breaker_trips = 0
        self.specs[inst.spec.name].losses = 0
        if inst.probing:
            inst.probing = False
            before = inst.free
            inst.slots = inst.spec.concurrency
            self.router.adjust_free(inst, inst.free - before)

    def on_failure(self, inst: AgentInstance, now: float) -> list[Decision]:
        """Count a failed attempt; open the circuit breaker after too many in a row."""
        inst.consecutive_failures += 1
        h = self.health
        if inst.state is not AgentState.READY:
            return []
        if inst.consecutive_failures < h.breaker_failures and not inst.probing:
            return []
        inst.breaker_trips += 1
        delay = min(h.breaker_backoff_max_s, h.breaker_backoff_s * 2.0 ** (inst.breaker_trips - 1))
        delay += delay * h.restart_jitter * self.rng.random()
        self.set_state(inst, AgentState.QUARANTINED)
        self._timer(now + delay, "probe", inst.id)
        return [
            QuarantineAgent(
                now, None, None,
                f"{inst.consecutive_failures} consecutive failed attempts; probing again in "
                f"{delay:.1f}s",
                inst.spec.name, inst.id, delay,
            )
        ]  # fmt: skip

    # --- time ---------------------------------------------------------------------------------

    def _timer(self, at: float, kind: str, name: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, kind, name))

    def tick(
        self,
        now: float,
        depth: Mapping[str, int],
        running: int = 0,
        running_cap: Mapping[str, int] | None = None,
    ) -> list[Decision]:
        """Fire due timers (restarts, probes, rate-limit ends), then apply the scaling policy.

        ``depth`` is ready tasks per capability; ``running`` and ``running_cap`` count the
        attempts running now (over all, per capability), for the concurrency limits.
        """
        out: list[Decision] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, name = heapq.heappop(timers)
            if kind == "respawn":
                sp = self.specs[name]
                sp.respawn_due -= 1
                if sp.live < sp.min_instances:
                    new = self._new_instance(sp, now, AgentState.STARTING)
                    out.append(
                        SpawnAgent(now, None, None, "restart after a lost instance", name, new.id)
                    )
            elif kind == "probe":
                held = self.instances.get(name)
                if held is not None and held.state is AgentState.QUARANTINED:
                    held.probing = True
                    held.slots = 1
                    self.set_state(held, self._open_state(held))
            elif kind == "unthrottle":
                sp = self.specs[name]
                sp.throttled_until = None
                for i in sp.instances.values():
                    if i.state is AgentState.THROTTLED:
                        self.set_state(i, AgentState.READY)
        if self._elastic:
            self._observe(now, depth)
            out.extend(self._scale(now, depth, running, running_cap or {}))
            self._ticked = now
            self._ticked_depth = {cap: n for cap, n in depth.items() if n}
        return out

    @property
    def autoscaling(self) -> bool:
        return any(sp.max_instances > sp.min_instances for sp in self.specs.values())

    def quiet(self) -> bool:
        """True when ``tick`` would do nothing: no timer due and no elastic spec."""
        return not self._timers and not self._elastic

    def _observe(self, now: float, depth: Mapping[str, int]) -> None:
        """Step the time-averages the policy reads (queue depths, busy slots) to ``now``."""
        # Both as they will be once this round's queue is dispatched (the tick comes before the
        # dispatch): the queue less what free slots take, busy slots plus what their free slots
        # take (all of their capabilities' queue at most: conservative when another spec
        # takes some).
        window = self.policy.scale_up_window_s
        avg = self._depth_avg
        for cap in {*avg, *depth}:
            n = depth.get(cap, 0)
            if n:
                n = max(0, n - sum(i.free for i in self.router.instances(cap)))
            avg[cap] = avg.get(cap, _ZERO).step(n, now, window)
        window = self.policy.utilisation_window_s
        for sp in self.specs.values():
            if sp.max_instances > sp.min_instances:
                running = free = 0
                for i in sp.instances.values():
                    if i.state not in (AgentState.LOST, AgentState.DRAINING):
                        running += i.running
                        free += i.free
                queued = sum(depth.get(cap, 0) for cap in sp.spec.capabilities)
                sp.busy = sp.busy.step(running + min(queued, free), now, window)

    def _views(self) -> list[SpecView]:
        """The elastic specs as the scaling policy sees them (draining instances are gone)."""
        return [
            SpecView(
                sp.spec.name,
                sp.spec.capabilities,
                sp.spec.concurrency,
                sp.min_instances,
                sp.max_instances,
                [
                    InstanceView(i.id, i.running, i.idle_since, i.state is AgentState.STARTING)
                    for i in sp.instances.values()
                    if i.state not in (AgentState.LOST, AgentState.DRAINING)
                ],
                sp.last_action_at,
                sp.last_shrink_at,
                sp.hold_until,
                sp.busy,
            )
            for sp in self.specs.values()
            if sp.max_instances > sp.min_instances
        ]

    def _scale(
        self, now: float, depth: Mapping[str, int], running: int, running_cap: Mapping[str, int]
    ) -> list[Decision]:
        threshold = self.policy.spawn_threshold
        deep = [cap for cap, n in depth.items() if n > threshold]
        free = {
            cap: sum(i.free for i in self.router.instances(cap)) for cap in deep
        }  # fmt: skip
        limits = self.capability_limits
        room = {cap: limits[cap] - running_cap.get(cap, 0) for cap in depth if cap in limits}
        room_total = None if self.max_concurrency is None else self.max_concurrency - running
        actions = plan(
            self._views(), depth, self.policy, now,
            instances=len(self.instances), free=free, room=room, room_total=room_total,
            served=self._served(depth), sustained=self._depth_avg,
        )  # fmt: skip
        out: list[Decision] = []
        for action in actions:
            sp = self.specs[action.spec]
            before = sum(
                1 for i in sp.instances.values()
                if i.state not in (AgentState.LOST, AgentState.DRAINING)
            )  # fmt: skip
            sp.last_action_at = now
            if action.delta < 0:
                sp.last_shrink_at = now
            out.append(
                ScaleResources(now, None, None, action.reason, action.spec, before,
                               before + action.delta)
            )  # fmt: skip
            if action.delta > 0:
                for _ in range(action.delta):
                    inst = self._new_instance(sp, now, AgentState.STARTING)
                    out.append(SpawnAgent(now, None, None, action.reason, action.spec, inst.id))
            for iid in action.terminate:
                inst = sp.instances[iid]
                self.set_state(inst, AgentState.DRAINING)
                inst.stopped_at = now  # it offers no slots from here on
                out.append(TerminateAgent(now, None, None, action.reason, action.spec, iid))
        return out

    def capacity(self, start: float, end: float) -> tuple[dict[str, float], dict[str, int]]:
        """Slot-seconds each instance offered within [start, end], and its slots."""
        offered: dict[str, float] = {}
        slots: dict[str, int] = {}
        for inst in [*self.instances.values(), *self.retired]:
            if inst.ready_at is None:
                continue
            lo = max(start, inst.ready_at)
            hi = min(end, inst.stopped_at if inst.stopped_at is not None else end)
            if hi > lo:
                slots[inst.id] = inst.spec.concurrency
                offered[inst.id] = offered.get(inst.id, 0.0) + inst.spec.concurrency * (hi - lo)
        return offered, slots

    def next_wakeup(self, depth: Mapping[str, int]) -> float | None:
        """When ``tick`` next has something to do: a timer, a cooldown that ends while a queue
        is deep, an idle instance to retire.

        A time the last tick already passed is not given again while the queues are as that
        tick saw them: the policy decided not to act then, and would not now (answering it
        would have the caller tick in a busy loop).
        """
        wake = self._timers[0][0] if self._timers else None
        if not self._elastic:
            return wake
        t = next_change(self._views(), depth, self.policy, self._served(depth), self._depth_avg)
        if t is None or (t <= self._ticked and self._same_depth(depth)):
            return wake
        return t if wake is None or t < wake else wake

    def _served(self, depth: Mapping[str, int]) -> set[str]:
        """Queued capabilities that some instance (of any spec, in any live state) offers."""
        return {cap for cap, n in depth.items() if n and self.router.instances(cap)}

    def _same_depth(self, depth: Mapping[str, int]) -> bool:
        seen = self._ticked_depth
        return sum(1 for n in depth.values() if n) == len(seen) and all(
            depth.get(cap, 0) == n for cap, n in seen.items()
        )


_ZERO = Smoothed()
