"""The agent pool: instances of each spec, their life, health and limits. Pure.

The pool owns every ``AgentInstance`` and keeps the router's index of free slots in step with
their states. It decides spawns and terminations (through the ``scaling`` policy, fed by
``pool_scaling``), restarts of lost instances and the circuit breaker (with the rules and
back-offs of ``health``), and per-spec rate limits (``rate_limit``), on the timers of
``pool_timers``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Final

from metaagent.core.decisions import (
    Decision,
    QuarantineAgent,
    ScaleResources,
    SpawnAgent,
    TerminateAgent,
)
from metaagent.core.health import breaker_delay, count_failure, count_success, restart_delay
from metaagent.core.instances import AgentInstance, AgentState
from metaagent.core.pool_scaling import ScaleTracker
from metaagent.core.pool_timers import TimerKind, Timers
from metaagent.core.scaling import next_change, plan
from metaagent.core.spec_pool import SpecPool, check_initial
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping

    from metaagent.core.health import HealthPolicy
    from metaagent.core.routing.router import Router
    from metaagent.core.scaling import PoolPolicy, ScaleAction
    from metaagent.core.specs import AgentSpec

RETIRED_KEPT: Final = 1_000
"""Stopped and lost instances kept for reports (the latest ones): a long-lived pool that
churns through instances must not keep every one it ever had."""


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
        # Lost or stopped, the latest RETIRED_KEPT, for utilisation figures and reports.
        self.retired: deque[AgentInstance] = deque()
        self.retired_total = 0  # every instance ever retired, the ones dropped included
        self.retired_kept = RETIRED_KEPT
        self._timers = Timers()
        self._on_timer: dict[TimerKind, Callable[[str, float], list[Decision]]] = {
            TimerKind.RESPAWN: self._respawn,
            TimerKind.PROBE: self._probe,
            TimerKind.UNTHROTTLE: self._unthrottle,
        }
        self._elastic = False  # some spec may grow or shrink
        # The ids of live and kept instances; generated ids never repeat anyway (a counter per
        # spec), so a restart gets a new one without remembering every id ever given out.
        self._issued: set[str] = set()
        self._offered: set[str] = set()  # capabilities of every spec
        self._initial = 0  # the min_instances of the specs added, against max_agents
        # When an instance began to take work since the last round: the next round has work
        # to route to it, even when it was reported ready while the caller carried out that
        # round's decisions (a runner with nothing to start is ready as it is spawned).
        self._woken: float | None = None
        self._scaling = ScaleTracker(router, policy, self.specs)

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
        check_initial(spec.name, min_instances, self._initial, self.policy.max_agents)
        self.specs[spec.name] = SpecPool(spec, min_instances, max_instances)
        self._initial += min_instances
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
            if sp.max_instances > 1 or sp.next_n > 1 or iid in self._issued:
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
        self._wake(now)

    def _wake(self, now: float) -> None:
        if self._woken is None or now < self._woken:
            self._woken = now

    def _open_state(self, inst: AgentInstance) -> AgentState:
        """The state of an instance that may take work: throttled while its spec's rate is spent."""
        throttled = self.specs[inst.spec.name].rate.throttled
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
        self._retire(inst)
        sp.losses += 1
        out: list[Decision] = [
            TerminateAgent(now, None, None, f"lost: {reason}", inst.spec.name, iid, lost=True)
        ]
        delay = restart_delay(self.health, sp.losses, self.rng)
        # Growth waits out the same back-off: a spec whose instances die at start (a bad
        # command, a poison task) must not be spawned again at every decision round.
        sp.hold_until = now + delay
        if sp.live + sp.respawn_due < sp.min_instances:
            sp.respawn_due += 1
            self._timers.set(now + delay, TimerKind.RESPAWN, sp.spec.name)
        return out

    def stopped(self, iid: str, now: float) -> None:
        """A terminated instance has exited."""
        inst = self.instances.pop(iid, None)
        if inst is None:
            return
        if inst.stopped_at is None:  # a drained instance offered no slots since its terminate
            inst.stopped_at = now
        self._retire(inst)
        self.set_state(inst, AgentState.STOPPED)
        self.router.remove(inst)
        self.specs[inst.spec.name].instances.pop(iid, None)

    def _retire(self, inst: AgentInstance) -> None:
        """Keep a lost or stopped instance for reports; the oldest kept goes past the cap."""
        retired = self.retired
        while retired and len(retired) >= self.retired_kept:
            self._issued.discard(retired.popleft().id)
        retired.append(inst)
        self.retired_total += 1

    # --- health and limits --------------------------------------------------------------------

    def on_start(self, inst: AgentInstance, now: float) -> None:
        """An attempt started on ``inst``: apply the spec's rate limit."""
        rate = inst.spec.rate_per_min
        if rate is None:
            return
        sp = self.specs[inst.spec.name]
        until = sp.rate.start(now, rate)
        if until is not None:
            for i in sp.instances.values():
                if i.state is AgentState.READY:
                    self.set_state(i, AgentState.THROTTLED)
            self._timers.set(until, TimerKind.UNTHROTTLE, sp.spec.name)

    def on_success(self, inst: AgentInstance) -> None:
        """An attempt on ``inst`` succeeded: reset its failure counts, close a half-open breaker."""
        self.specs[inst.spec.name].losses = 0
        if not (inst.consecutive_failures or inst.breaker_trips or inst.probing):
            return  # nothing to reset (``count_success`` would change nothing)
        if count_success(inst):
            before = inst.free
            inst.slots = inst.spec.concurrency
            self.router.adjust_free(inst, inst.free - before)

    def on_failure(self, inst: AgentInstance, now: float) -> list[Decision]:
        """Count an agent fault (``health.is_agent_fault``); open the circuit breaker after
        ``breaker_failures`` in a row."""
        if not count_failure(inst, self.health):
            return []
        delay = breaker_delay(self.health, inst.breaker_trips, self.rng)
        self.set_state(inst, AgentState.QUARANTINED)
        self._timers.set(now + delay, TimerKind.PROBE, inst.id)
        return [
            QuarantineAgent(
                now, None, None,
                f"{inst.consecutive_failures} consecutive agent faults; probing again in "
                f"{delay:.1f}s",
                inst.spec.name, inst.id, delay,
            )
        ]  # fmt: skip

    # --- time ---------------------------------------------------------------------------------

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
        self._woken = None
        out: list[Decision] = []
        for timer in self._timers.due(now):
            out.extend(self._on_timer[timer.kind](timer.name, now))
        if self._elastic:
            self._scaling.observe(now, depth)
            out.extend(self._scale(now, depth, running, running_cap or {}))
            self._scaling.seen(now, depth)
        return out

    def _respawn(self, spec_name: str, now: float) -> list[Decision]:
        sp = self.specs[spec_name]
        sp.respawn_due -= 1
        if sp.live >= sp.min_instances:
            return []
        new = self._new_instance(sp, now, AgentState.STARTING)
        return [SpawnAgent(now, None, None, "restart after a lost instance", spec_name, new.id)]

    def _probe(self, iid: str, now: float) -> list[Decision]:
        held = self.instances.get(iid)
        if held is not None and held.state is AgentState.QUARANTINED:
            held.probing = True
            held.slots = 1
            self.set_state(held, self._open_state(held))
        return []

    def _unthrottle(self, spec_name: str, now: float) -> list[Decision]:
        sp = self.specs[spec_name]
        sp.rate.release()
        for i in sp.instances.values():
            if i.state is AgentState.THROTTLED:
                self.set_state(i, AgentState.READY)
        return []

    @property
    def autoscaling(self) -> bool:
        return any(sp.elastic for sp in self.specs.values())

    def quiet(self) -> bool:
        """True when ``tick`` would do nothing: no timer due, no elastic spec, no instance
        that began to take work since the last round."""
        return not self._timers and not self._elastic and self._woken is None

    def _scale(
        self, now: float, depth: Mapping[str, int], running: int, running_cap: Mapping[str, int]
    ) -> list[Decision]:
        limits = self.capability_limits
        view = self._scaling.round_view(
            depth,
            instances=len(self.instances),
            room={cap: limits[cap] - running_cap.get(cap, 0) for cap in depth if cap in limits},
            room_total=math.inf if self.max_concurrency is None else self.max_concurrency - running,
        )
        out: list[Decision] = []
        for action in plan(view, self.policy, now):
            out.extend(self._apply(action, now))
        return out

    def _apply(self, action: ScaleAction, now: float) -> list[Decision]:
        """Carry out one scale action: spawn its instances or drain the ones it names."""
        sp = self.specs[action.spec]
        before = sum(1 for _ in sp.in_service())
        sp.last_action_at = now
        if action.delta < 0:
            sp.last_shrink_at = now
        out: list[Decision] = [
            ScaleResources(now, None, None, action.reason, action.spec, before,
                           before + action.delta)
        ]  # fmt: skip
        for _ in range(max(0, action.delta)):
            inst = self._new_instance(sp, now, AgentState.STARTING)
            out.append(SpawnAgent(now, None, None, action.reason, action.spec, inst.id))
        for iid in action.terminate:
            inst = sp.instances[iid]
            self.set_state(inst, AgentState.DRAINING)
            inst.stopped_at = now  # it offers no slots from here on
            out.append(TerminateAgent(now, None, None, action.reason, action.spec, iid))
        return out

    def _routable(self, depth: Mapping[str, int]) -> bool:
        """Whether some queued capability has a free slot to take it."""
        free = self.router.free
        return any(n and free(cap) for cap, n in depth.items())

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
        """When ``tick`` next has something to do: a timer, an instance ready since the last
        round while work waits for it, a cooldown that ends while a queue is deep, an idle
        instance to retire.

        A time the last tick already passed is not given again while the queues are as that
        tick saw them: the policy decided not to act then, and would not now (answering it
        would have the caller tick in a busy loop).
        """
        wake = self._timers.next_at()
        woken = self._woken
        if woken is not None and (wake is None or woken < wake) and self._routable(depth):
            wake = woken
        if not self._elastic:
            return wake
        t = next_change(self._scaling.wake_view(depth), self.policy)
        if t is None or self._scaling.decided(t, depth):
            return wake
        return t if wake is None or t < wake else wake
