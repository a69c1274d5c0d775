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
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from metaagent.core.decisions import Decision, RouteTask
from metaagent.core.learning import ArmStats
from metaagent.core.retry import RetryPolicy
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.core.scheduler.scheduler import Scheduler
from metaagent.core.tasks import AgentTask, Outcome, TaskState
from metaagent.sim.result import AgentUse, SimResult, percentile
from metaagent.sim.spec import Sampler, SimSpec, generate_tasks, sample

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.decisions import Output
    from metaagent.core.routing import Chooser

PoolShape = Literal["demand", "proportional"]

__all__ = ["PoolShape", "Simulation", "simulate"]

_FAILED = "simulated failure"


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
        self.scheduler = Scheduler(config)
        self.scheduler.router.chooser = chooser
        self.run_ids: list[str] = []
        self.groups: dict[tuple[str, str], str] = {}  # (run, task) -> group, when ignored
        self._noise: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._profiles: dict[tuple[str, str], tuple[Sampler, float]] = {}
        self._rng = random.Random(spec.seed)  # retries and anything drawn in dispatch order
        self._noise_rng = random.Random(spec.seed + 7919)  # drawn in submission order
        self._decisions: dict[str, int] = {}
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
                learning.load(name, cap, ArmStats(ok, n - ok, n, prof.duration.mean_s))

    def _arrivals(self) -> list[tuple[float, list[AgentTask]]]:
        spec = self.spec
        if spec.workload is not None:
            caps = sorted({c for p in spec.pools for c in p.spec.capabilities})
            return generate_tasks(spec.workload, caps, spec.seed)
        if spec.runs:
            return sorted(((at, list(tasks)) for at, tasks in spec.runs), key=lambda r: r[0])
        return [(0.0, list(spec.tasks))]

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
            noise[(run_id, t.id)] = (rng.gauss(0.0, 1.0), rng.random(), rng.random())
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
        spec = self.spec
        sched = self.scheduler
        runs = sched.runs
        arrivals = self._arrivals()
        single = len(arrivals) == 1
        heap: list[tuple[float, int, str, str, int, Outcome]] = []
        seq = 0
        noise = self._noise
        profiles = self._profiles
        fixed = spec.durations
        scale = spec.scale_by_complexity
        rng = self._rng
        ignore_groups = spec.ignore_groups
        last_inst: dict[tuple[str, str], str] = {}
        switches = dispatches = 0
        now = 0.0
        nxt_arrival = 0
        n_arrivals = len(arrivals)
        succeeded = Outcome.SUCCEEDED
        while True:
            while nxt_arrival < n_arrivals and arrivals[nxt_arrival][0] <= now:
                rid = "sim" if single else f"r{nxt_arrival}"
                self._count(self._submit(rid, arrivals[nxt_arrival][1], now))
                nxt_arrival += 1
            while heap and heap[0][0] <= now:
                _, _, rid, tid, attempt, outcome = heapq.heappop(heap)
                err = None if outcome is succeeded else _FAILED
                self._count(sched.finish(rid, tid, attempt, outcome, now, error=err))
            wake = sched.next_wakeup()
            if wake is not None and wake <= now:
                # Timers are due (a back-off ended, a quarantined agent may be probed).
                outs = sched.tick(now)
                routes = [o for o in outs if type(o) is RouteTask]
                self._count([o for o in outs if type(o) is not RouteTask])
            else:
                routes = sched.dispatch(now)
            dispatches += len(routes)
            if self.on_route is not None:
                for r in routes:
                    self.on_route(r)
            for r in routes:
                rid, tid = r.run_id or "", r.task_id or ""
                task = runs[rid].tasks[tid].task
                cap = task.capability
                group = self.groups.get((rid, tid)) if ignore_groups else task.group
                if group is not None:
                    gk = (rid, group)
                    prev = last_inst.get(gk)
                    if prev is not None and prev != r.instance:
                        switches += 1
                    last_inst[gk] = r.instance
                key = (r.spec, cap)
                prof = profiles.get(key)
                if prof is None:
                    p = spec.profile(r.spec, cap)
                    prof = profiles[key] = (p.duration.sampler(), p.failure_rate)
                fixed_luck = noise.get((rid, tid)) if r.attempt == 1 else None
                if fixed_luck is not None:
                    z, v, u = fixed_luck
                else:  # a retry, or a sub-task a decomposition created
                    z, v, u = rng.gauss(0.0, 1.0), rng.random(), rng.random()
                d = fixed.get(tid) if fixed else None
                if d is None:
                    kind, a, b = prof[0]
                    d = math.exp(a + b * z) if kind == 1 else sample(prof[0], z, v)
                    if scale:
                        d *= 0.5 + task.complexity
                outcome = succeeded if u >= prof[1] else Outcome.ERROR
                if task.timeout_s is not None and d > task.timeout_s:
                    d, outcome = task.timeout_s, Outcome.TIMEOUT
                seq += 1
                heapq.heappush(heap, (now + d, seq, rid, tid, r.attempt, outcome))
            candidates = []
            if heap:
                candidates.append(heap[0][0])
            if nxt_arrival < n_arrivals:
                candidates.append(arrivals[nxt_arrival][0])
            wake = sched.next_wakeup()
            if wake is not None:
                candidates.append(wake)
            if not candidates:
                break
            now = max(now, min(candidates))
        self._decisions["route_task"] = self._decisions.get("route_task", 0) + dispatches
        return self._measure(dispatches, switches, len(last_inst))

    def _measure(self, dispatches: int, switches: int, groups: int) -> SimResult:
        spec = self.spec
        sched = self.scheduler
        states: dict[str, int] = {}
        waits: list[float] = []
        end = 0.0
        attempts = ok_attempts = tasks = 0
        for rid in self.run_ids:
            for rec in sched.runs[rid].tasks.values():
                tasks += 1
                states[rec.state.value] = states.get(rec.state.value, 0) + 1
                if rec.finished_at is not None and rec.finished_at > end:
                    end = rec.finished_at
                if rec.attempts:
                    attempts += len(rec.attempts)
                    ok_attempts += rec.state is TaskState.SUCCEEDED
                    if rec.ready_at is not None:
                        # attempt times are relative to the run's start; ready_at is not
                        t0 = rec.run.started_at
                        waits.append(rec.attempts[0].started_at + t0 - rec.ready_at)
        waits.sort()
        by_agent: dict[str, AgentUse] = {}
        busy = 0.0
        for inst in sched.agents.values():
            use = by_agent.get(inst.spec.name)
            if use is None:
                use = by_agent[inst.spec.name] = AgentUse(0, 0, 0, 0.0, 0.0)
            use.instances += 1
            use.slots += inst.slots
            use.attempts += inst.tasks_done
            use.busy_s += inst.busy_s
            busy += inst.busy_s
        for use in by_agent.values():
            use.utilisation = use.busy_s / (use.slots * end) if end > 0 else 0.0
        slots = spec.slots
        return SimResult(
            name=spec.name,
            seed=spec.seed,
            tasks=tasks,
            instances=spec.instances,
            slots=slots,
            makespan_s=end,
            busy_s=busy,
            utilisation=busy / (slots * end) if end > 0 and slots else 0.0,
            queue_wait_s={
                "p50": percentile(waits, 50),
                "p95": percentile(waits, 95),
                "p99": percentile(waits, 99),
                "max": waits[-1] if waits else 0.0,
                "mean": math.fsum(waits) / len(waits) if waits else 0.0,
            },
            states=dict(sorted(states.items())),
            success_rate=states.get("succeeded", 0) / tasks if tasks else 0.0,
            attempt_success_rate=ok_attempts / attempts if attempts else 0.0,
            decisions=dict(sorted(self._decisions.items())),
            dispatches=dispatches,
            dispatches_per_task=dispatches / tasks if tasks else 0.0,
            groups=groups,
            switches=switches,
            switches_per_group=switches / groups if groups else 0.0,
            by_agent=by_agent,
        )


def simulate(spec: SimSpec, *, chooser: Chooser | None = None) -> SimResult:
    """Run ``spec`` to the end on virtual time (see ``Simulation``)."""
    return Simulation(spec, chooser=chooser).run()
