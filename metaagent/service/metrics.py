"""``GET /metrics``: the service's figures in the Prometheus text format.

Gauges are read from the orchestrator when scraped (tasks by state, queue depth per
capability, instances per spec and state, utilisation); histograms and counters are fed as
things happen (dispatch latency and attempts by outcome from the runs' events, journal commit
latency from the orchestrator's commits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.registry import Collector

    from metaagent.runtime.events import Event
    from metaagent.runtime.orchestrator import Orchestrator
    from metaagent.service.eventlog import EventLog

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _Live:
    """The gauges, read from the orchestrator at each scrape."""

    def __init__(self, orch: Orchestrator, log: EventLog) -> None:
        self.orch = orch
        self.log = log

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sched = self.orch.scheduler
        tasks = GaugeMetricFamily(
            "metaagent_tasks", "Tasks of the runs in memory, by state.", labels=["state"]
        )
        counts: dict[str, int] = {}
        for run_id in list(sched.runs):
            for st in self.orch.task_states(run_id).values():
                counts[st.value] = counts.get(st.value, 0) + 1
        for state, n in sorted(counts.items()):
            tasks.add_metric([state], n)
        yield tasks
        depth = GaugeMetricFamily(
            "metaagent_queue_depth", "Ready tasks waiting, per capability.", labels=["capability"]
        )
        for cap, n in sorted(sched.queue_depth().items()):
            depth.add_metric([cap], n)
        yield depth
        instances = GaugeMetricFamily(
            "metaagent_instances", "Agent instances per spec and state.", labels=["spec", "state"]
        )
        per: dict[tuple[str, str], int] = {}
        slots = busy = 0
        for inst in sched.agents.values():
            key = (inst.spec.name, inst.state.value)
            per[key] = per.get(key, 0) + 1
            if inst.state.value == "ready":
                slots += inst.slots
                busy += inst.running
        for (spec, state), n in sorted(per.items()):
            instances.add_metric([spec, state], n)
        yield instances
        yield GaugeMetricFamily(
            "metaagent_utilisation",
            "Busy slots over the slots of ready instances, now (0..1).",
            value=busy / slots if slots else 0.0,
        )
        yield GaugeMetricFamily(
            "metaagent_runs_open", "Runs this server executes now.", value=len(sched.runs)
        )
        yield GaugeMetricFamily(
            "metaagent_event_subscribers", "Clients following events.", value=self.log.subscribers
        )
        yield GaugeMetricFamily(
            "metaagent_events_head", "The largest event seq stored.", value=self.log.head
        )


class Metrics:
    """The registry of one server."""

    def __init__(self, orch: Orchestrator, log: EventLog) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        live: Collector = _Live(orch, log)
        self.registry.register(live)
        self.dispatch = Histogram(
            "metaagent_dispatch_latency_seconds",
            "From a task ready to its attempt routed.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.attempts = Counter(
            "metaagent_attempts", "Attempts ended, by outcome.", ["outcome"], registry=self.registry
        )
        self.commit = Histogram(
            "metaagent_journal_commit_seconds",
            "One journal commit (a dispatch turn's group commit).",
            buckets=_COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "metaagent_events", "Events recorded.", ["type"], registry=self.registry
        )
        self._orch = orch

    def observe(self, ev: Event) -> None:
        """Feed one runtime event of a run."""
        self.events.labels(ev.kind).inc()
        if ev.kind != "task" or ev.task_id is None:
            return
        run = self._orch.scheduler.runs.get(ev.run_id)
        rec = None if run is None else run.tasks.get(ev.task_id)
        if rec is None:
            return
        if ev.state == "running":
            d = ev.decision
            if d is not None and rec.ready_at is not None:
                self.dispatch.observe(max(0.0, d.at - rec.ready_at))
            return
        counted = ev.state in ("succeeded", "retrying", "failed") or (
            ev.state == "cancelled" and getattr(ev.decision, "was_running", False)
        )
        if counted and rec.attempts and rec.attempts[-1].outcome is not None:
            self.attempts.labels(rec.attempts[-1].outcome.value).inc()
