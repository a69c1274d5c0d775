"""The simulator: the real ``Scheduler`` driven on virtual time, with sampled attempt outcomes.

No I/O, no asyncio, no clock: an event heap of attempt completions (and task arrivals) is
drained in time order; each routed attempt gets a duration and an outcome sampled from its
(agent, capability) profile with a seeded ``random.Random``. The same spec and seed give the
same result. Each task's first attempt draws from noise fixed per task (common random
numbers), so two policies simulated on one spec meet the same luck and compare fairly.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, NamedTuple

from metaagent.core.decisions import Decision, RouteTask
from metaagent.core.learning import ArmStats
from metaagent.core.retry import RetryPolicy
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.core.scheduler.scheduler import Scheduler
from metaagent.core.tasks import AgentTask, Outcome, TaskState, Usage
from metaagent.sim.result import AgentUse, SimResult, percentile
from metaagent.sim.spec import sample
from metaagent.sim.workload import Arrival, generate_tasks

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.decisions import Output
    from metaagent.core.routing.router import Chooser
    from metaagent.sim.spec import Profile, Sampler, SimSpec

PoolShape = Literal["demand", "proportional"]

__all__ = ["PoolShape", "Simulation", "simulate"]

_FAILED = "simulated failure"


class _Completion(NamedTuple):
    """An attempt's end on the event heap: ordered by time, then by when it was pushed."""

    at_s: float
    seq: int
    run_id: str
    task_id: str
    attempt: int
    outcome: Outcome
    cost_usd: float = 0.0


class _Luck(NamedTuple):
    """The draws an attempt's duration and outcome are sampled from."""

    z: float  # standard normal (lognormal durations)
    v: float  # uniform in [0, 1) (exponential and uniform durations)
    u: float  # uniform in [0, 1): the attempt fails when below the failure rate


class _Odds(NamedTuple):
    """A profile as the hot loop reads it."""

    sampler: Sampler
    failure_rate: float
    profile: Profile  # for failures that grow with complexity, and the cost


@dataclass(slots=True)
class _Tally:
    """What the tasks of every run came to, for ``SimResult``."""

    tasks: int = 0
    states: dict[str, int] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)  # ready -> first start, ascending
    end_s: float = 0.0
    attempts: int = 0
    ok_attempts: int = 0


def _config(spec: SimSpec) -> SchedulerConfig:
    s = spec.settings
    tasks_total = (
        len(spec.tasks)
        + sum(len(t) for _, t in spec.runs)
        + (spec.workload.count if spec.workload else 0)
    )
    config = SchedulerConfig(
        max_concurrency=s.max_concurrency or max(1, spec.slots),
        max_queued=s.max_queued or max(10_000, tasks_total),
        retry=RetryPolicy(base_s=s.retry_base_s, max_s=s.retry_max_s, jitter=s.retry_jitter),
        routing=s.routing,
        seed=spec.seed,
        learn=s.learn,
        affinity_margin=s.affinity_margin,
    )
    if s.weights is not None:
        config = replace(config, weights=s.weights)
    if s.aging_interval_s is not None:
        config = replace(config, aging_interval_s=s.aging_interval_s)
    return config


def _attempt(
    task: AgentTask, odds: _Odds, luck: _Luck, fixed_s: float | None, scale: bool
) -> tuple[float, Outcome]:
    """An attempt's duration (seconds) and outcome."""
    d = fixed_s
    if d is None:
        d = sample(odds.sampler, luck.z, luck.v)
        if scale:
            d *= 0.5 + task.complexity
    failure = odds.failure_rate
    if odds.profile.failure_growth:
        failure = odds.profile.failure_at(task.complexity)
    outcome = Outcome.SUCCEEDED if luck.u >= failure else Outcome.ERROR
    if task.timeout_s is not None and d > task.timeout_s:
        return task.timeout_s, Outcome.TIMEOUT
    return d, outcome


class Simulation:
    """One simulation of ``spec``. After ``run()``, ``scheduler`` holds every run for study.

    ``chooser`` replaces the router's scoring with a baseline policy (see ``policies``);
    ``on_route`` is called with every routing decision.
    """

    def __init__(
        self,
        spec: SimSpec,
        *,
        chooser: Chooser | None = None,
        on_route: Callable[[RouteTask], None] | None = None,
    ) -> None:
        self.spec = spec
        self.on_route = on_route
        self.scheduler = Scheduler(_config(spec))
        self.scheduler.router.chooser = chooser
        self.run_ids: list[str] = []
        self.groups: dict[tuple[str, str], str] = {}  # (run, task) -> group, when ignored
        self._noise: dict[tuple[str, str], _Luck] = {}  # (run, task) -> its first attempt's
        self._odds: dict[tuple[str, str], _Odds] = {}  # (spec, capability) -> profile
        self._rng = random.Random(spec.seed)  # retries and anything drawn in dispatch order
        self._noise_rng = random.Random(spec.seed + 7919)  # drawn in submission order
        self._decisions: dict[str, int] = {}
        self._heap: list[_Completion] = []
        self._seq = 0
        self._pending: list[Arrival] = []
        self._next_arrival = 0
        self._last_instance: dict[tuple[str, str], str] = {}  # (run, group) -> instance
        self._switches = 0
        self._dispatches = 0
        self._cost_usd = 0.0
        for pool in spec.pools:
            for k in range(pool.count):
                self.scheduler.add_agent(pool.spec, 0.0, instance_id=f"{pool.spec.name}#{k}")
        if spec.warm_start > 0:
            self._warm_start(spec.warm_start)

    def _warm_start(self, n: int) -> None:
        learning = self.scheduler.learning
        for pool in self.spec.pools:
            name = pool.spec.name
            for cap in pool.spec.capabilities:
                prof = self.spec.profile(name, cap)
                ok = round(n * (1.0 - prof.failure_rate))
                paid = n if prof.cost_usd > 0 else 0
                stats = ArmStats(ok, n - ok, n, prof.duration.mean_s, paid, prof.cost_usd)
                learning.load(name, cap, stats)

    def _arrivals(self) -> list[Arrival]:
        spec = self.spec
        if spec.workload is not None:
            caps = sorted({c for p in spec.pools for c in p.spec.capabilities})
            return generate_tasks(spec.workload, caps, spec.seed)
        if spec.runs:
            return sorted((Arrival(at, list(tasks)) for at, tasks in spec.runs), key=_arrival_s)
        return [Arrival(0.0, list(spec.tasks))]

    def _submit(self, run_id: str, tasks: list[AgentTask], now: float) -> list[Output]:
        spec = self.spec
        ordering = spec.ordering
        if spec.ignore_groups:
            for t in tasks:
                if t.group is not None:
                    self.groups[(run_id, t.id)] = t.group
            tasks = [replace(t, group=None) if t.group is not None else t for t in tasks]
        if ordering in ("fifo", "critical_path"):
            tasks = [replace(t, priority=0) if t.priority else t for t in tasks]
        rng = self._noise_rng
        noise = self._noise
        for t in tasks:
            noise[(run_id, t.id)] = _Luck(rng.gauss(0.0, 1.0), rng.random(), rng.random())
        sched = self.scheduler
        run = sched.prepare(run_id, tasks, now)
        if ordering in ("fifo", "priority"):
            for rec in run.tasks.values():
                rec.rank = 0.0
        self.run_ids.append(run_id)
        return sched.accept(run, now)

    def _count(self, outs: Sequence[Output]) -> None:
        counts = self._decisions
        for o in outs:
            if isinstance(o, Decision):
                counts[o.type] = counts.get(o.type, 0) + 1

    def run(self) -> SimResult:
        """Simulate until every task is finished; return the measurements."""
        self._pending = self._arrivals()
        now = 0.0
        while True:
            self._admit(now)
            self._complete(now)
            routes = self._routes(now)
            self._dispatches += len(routes)
            if self.on_route is not None:
                for r in routes:
                    self.on_route(r)
            for r in routes:
                self._start(r, now)
            at = self._next_event_s()
            if at is None:
                break
            now = max(now, at)
        self._decisions["route_task"] = self._decisions.get("route_task", 0) + self._dispatches
        return self._measure()

    # --- one step of the event loop ----------------------------------------------------------

    def _admit(self, now: float) -> None:
        """Submit the runs that have arrived by ``now``."""
        pending = self._pending
        while self._next_arrival < len(pending) and pending[self._next_arrival].at_s <= now:
            i = self._next_arrival
            run_id = "sim" if len(pending) == 1 else f"r{i}"
            self._count(self._submit(run_id, pending[i].tasks, now))
            self._next_arrival += 1

    def _complete(self, now: float) -> None:
        """Finish the attempts that have ended by ``now``."""
        heap = self._heap
        finish = self.scheduler.finish
        while heap and heap[0].at_s <= now:
            c = heapq.heappop(heap)
            err = None if c.outcome is Outcome.SUCCEEDED else _FAILED
            if c.cost_usd:
                self._bill(c)
            self._count(finish(c.run_id, c.task_id, c.attempt, c.outcome, now, error=err))

    def _bill(self, c: _Completion) -> None:
        """Report the attempt's cost as its usage, as a runner does before its end is recorded."""
        rec = self.scheduler.runs[c.run_id].tasks[c.task_id]
        if rec.attempt == c.attempt and rec.attempts:
            rec.attempts[-1].usage = Usage(cost_usd=c.cost_usd)
            self._cost_usd += c.cost_usd

    def _routes(self, now: float) -> list[RouteTask]:
        """The attempts to start now: those the due timers release, else a dispatch."""
        sched = self.scheduler
        wake = sched.next_wakeup()
        if wake is not None and wake <= now:
            # Timers are due (a back-off ended, a quarantined agent may be probed).
            outs = sched.tick(now)
            self._count([o for o in outs if type(o) is not RouteTask])
            return [o for o in outs if type(o) is RouteTask]
        return sched.dispatch(now)

    def _start(self, r: RouteTask, now: float) -> None:
        """Sample the routed attempt and put its end on the heap."""
        rid, tid = r.run_id or "", r.task_id or ""
        task = self.scheduler.runs[rid].tasks[tid].task
        self._note_group(rid, tid, task, r.instance)
        odds = self._odds_of(r.spec, task.capability)
        luck = self._noise.get((rid, tid)) if r.attempt == 1 else None
        if luck is None:  # a retry, or a sub-task a decomposition created
            rng = self._rng
            luck = _Luck(rng.gauss(0.0, 1.0), rng.random(), rng.random())
        fixed_u = self.spec.outcome_luck.get((tid, r.attempt)) if self.spec.outcome_luck else None
        if fixed_u is not None:
            luck = luck._replace(u=fixed_u)
        fixed = self.spec.durations
        fixed_s = fixed.get(tid) if fixed else None
        d, outcome = _attempt(task, odds, luck, fixed_s, self.spec.scale_by_complexity)
        self._seq += 1
        heapq.heappush(
            self._heap,
            _Completion(now + d, self._seq, rid, tid, r.attempt, outcome, odds.profile.cost_usd),
        )

    def _note_group(self, rid: str, tid: str, task: AgentTask, instance: str) -> None:
        """Count a switch when a group's task goes to another instance than the last one."""
        group = self.groups.get((rid, tid)) if self.spec.ignore_groups else task.group
        if group is None:
            return
        key = (rid, group)
        prev = self._last_instance.get(key)
        if prev is not None and prev != instance:
            self._switches += 1
        self._last_instance[key] = instance

    def _odds_of(self, agent: str, capability: str) -> _Odds:
        key = (agent, capability)
        odds = self._odds.get(key)
        if odds is None:
            p = self.spec.profile(agent, capability)
            odds = self._odds[key] = _Odds(p.duration.sampler(), p.failure_rate, p)
        return odds

    def _next_event_s(self) -> float | None:
        """When the next thing happens (an attempt ends, a run arrives, a timer), or ``None``."""
        candidates = []
        if self._heap:
            candidates.append(self._heap[0].at_s)
        if self._next_arrival < len(self._pending):
            candidates.append(self._pending[self._next_arrival].at_s)
        wake = self.scheduler.next_wakeup()
        if wake is not None:
            candidates.append(wake)
        return min(candidates) if candidates else None

    # --- measuring ---------------------------------------------------------------------------

    def _measure(self) -> SimResult:
        spec = self.spec
        tally = self._tally()
        end = tally.end_s
        tasks = tally.tasks
        busy = self._busy_s()
        slots = spec.slots
        dispatches = self._dispatches
        groups = len(self._last_instance)
        return SimResult(
            name=spec.name,
            seed=spec.seed,
            tasks=tasks,
            instances=spec.instances,
            slots=slots,
            makespan_s=end,
            busy_s=busy,
            utilisation=busy / (slots * end) if end > 0 and slots else 0.0,
            queue_wait_s=_wait_summary(tally.waits),
            states=dict(sorted(tally.states.items())),
            success_rate=tally.states.get("succeeded", 0) / tasks if tasks else 0.0,
            attempt_success_rate=tally.ok_attempts / tally.attempts if tally.attempts else 0.0,
            decisions=dict(sorted(self._decisions.items())),
            dispatches=dispatches,
            dispatches_per_task=dispatches / tasks if tasks else 0.0,
            groups=groups,
            switches=self._switches,
            switches_per_group=self._switches / groups if groups else 0.0,
            by_agent=self._by_agent(end),
            cost_usd=self._cost_usd,
        )

    def _tally(self) -> _Tally:
        tally = _Tally()
        states = tally.states
        for rid in self.run_ids:
            for rec in self.scheduler.runs[rid].tasks.values():
                tally.tasks += 1
                states[rec.state.value] = states.get(rec.state.value, 0) + 1
                if rec.finished_at is not None and rec.finished_at > tally.end_s:
                    tally.end_s = rec.finished_at
                if rec.attempts:
                    tally.attempts += len(rec.attempts)
                    tally.ok_attempts += rec.state is TaskState.SUCCEEDED
                    if rec.ready_at is not None:
                        # attempt times are relative to the run's start; ready_at is not
                        t0 = rec.run.started_at
                        tally.waits.append(rec.attempts[0].started_at + t0 - rec.ready_at)
        tally.waits.sort()
        return tally

    def _busy_s(self) -> float:
        busy = 0.0
        for inst in self.scheduler.agents.values():
            busy += inst.busy_s  # in the agents' order, as a plain sum: results repeat exactly
        return busy

    def _by_agent(self, end_s: float) -> dict[str, AgentUse]:
        by_agent: dict[str, AgentUse] = {}
        for inst in self.scheduler.agents.values():
            use = by_agent.get(inst.spec.name)
            if use is None:
                use = by_agent[inst.spec.name] = AgentUse(0, 0, 0, 0.0, 0.0)
            use.instances += 1
            use.slots += inst.slots
            use.attempts += inst.tasks_done
            use.busy_s += inst.busy_s
        for use in by_agent.values():
            use.utilisation = use.busy_s / (use.slots * end_s) if end_s > 0 else 0.0
        return by_agent


def _arrival_s(a: Arrival) -> float:
    return a.at_s


def _wait_summary(waits: list[float]) -> dict[str, float]:
    """Percentiles, maximum and mean of ascending queue waits (seconds)."""
    return {
        "p50": percentile(waits, 50),
        "p95": percentile(waits, 95),
        "p99": percentile(waits, 99),
        "max": waits[-1] if waits else 0.0,
        "mean": math.fsum(waits) / len(waits) if waits else 0.0,
    }


def simulate(spec: SimSpec, *, chooser: Chooser | None = None) -> SimResult:
    """Run ``spec`` to the end on virtual time (see ``Simulation``)."""
    return Simulation(spec, chooser=chooser).run()
