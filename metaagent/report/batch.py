"""``BatchResult``: the results of a batch and the figures that tell how well it ran."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.budget import spend_by_agent, spend_of
from metaagent.core.tasks import TaskResult, TaskState

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.core.decisions import Decision


@dataclass(slots=True)
class BatchResult:
    """All task results of one batch plus its figures. Times are seconds since it started.

    ``speedup`` is the sum of attempt run times over the makespan; ``utilisation`` is busy
    slot-seconds over available slot-seconds: those the pool's instances offered while they
    were ready (at most ``slots`` times the makespan), or ``slots`` times the makespan when
    that is not known. ``agents`` gives, per agent instance, ``busy_s``, ``slots``,
    ``available_s`` (offered slot-seconds) and ``utilisation``. ``nodes`` gives, on a backend
    that places instances on a cluster (ray), the node each instance ran on; the report has it
    only then.
    """

    results: list[TaskResult]
    counts: dict[str, int]
    makespan_s: float
    total_run_s: float
    speedup: float
    peak_parallelism: int
    utilisation: float
    dispatches_per_task: float
    name: str = ""
    run_id: str = ""
    slots: int = 0
    decisions: list[Decision] = field(default_factory=list)
    started_at: float = 0.0  # on the orchestrator's clock; decision times are shifted by it
    agents: dict[str, dict[str, float]] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # instance -> its node (cluster backends)

    @property
    def ok(self) -> bool:
        return all(r.state is TaskState.SUCCEEDED for r in self.results)

    def result(self, task_id: str) -> TaskResult:
        for r in self.results:
            if r.task_id == task_id:
                return r
        raise KeyError(task_id)

    def to_json(self) -> dict[str, object]:
        """The report shape of ``metaagent run --json`` (a stable contract: extend, never drop)."""
        data = self._json()
        if self.nodes:
            data["nodes"] = dict(self.nodes)
        return data

    def _json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "run_id": self.run_id,
            "ok": self.ok,
            "makespan_s": round(self.makespan_s, 6),
            "total_run_s": round(self.total_run_s, 6),
            "speedup": round(self.speedup, 4),
            "peak_parallelism": self.peak_parallelism,
            "utilisation": round(self.utilisation, 4),
            "dispatches_per_task": round(self.dispatches_per_task, 4),
            "slots": self.slots,
            "counts": dict(self.counts),
            "agents": self.agents,
            "tasks": [_task_json(r) for r in self.results],
            "decisions": [self._decision_json(d) for d in self.decisions],
            "cost_usd": total_cost_usd(self.results),
            "spend": run_spend(self.results),
        }

    def _decision_json(self, d: Decision) -> dict[str, object]:
        data = d.to_json()
        data["at"] = round(d.at - self.started_at, 6)
        return data


def total_cost_usd(results: Sequence[TaskResult]) -> float:
    """The cost every attempt of these tasks reported, summed (0 when none reported one)."""
    return round(
        sum(
            (
                a.usage.cost_usd
                for r in results
                for a in r.attempts
                if a.usage is not None and a.usage.cost_usd is not None
            ),
            0.0,
        ),
        6,
    )


def run_spend(results: Sequence[TaskResult]) -> dict[str, object]:
    """The run's spend (``metaagent.core.budget``): in total and by agent (spec)."""
    total = spend_of(a for r in results for a in r.attempts)
    by_agent = {name: s.to_json() for name, s in spend_by_agent(results).items()}
    return {**total.to_json(), "by_agent": by_agent}


def _task_json(r: TaskResult) -> dict[str, object]:
    return {
        "id": r.task_id,
        "capability": r.capability,
        "state": r.state.value,
        "agent": r.agent,
        "agent_instance": r.attempts[-1].agent_instance if r.attempts else None,
        "output": r.output,
        "error": r.error,
        "ready_at": r.ready_at,
        "finished_at": r.finished_at,
        "spend": spend_of(r.attempts).to_json(),
        "attempts": [
            {
                "number": a.number,
                "agent": a.agent,
                "agent_instance": a.agent_instance,
                "started_at": round(a.started_at, 6),
                "finished_at": None if a.finished_at is None else round(a.finished_at, 6),
                "outcome": None if a.outcome is None else a.outcome.value,
                "error": a.error,
                "log": a.log,
                "usage": None if a.usage is None else a.usage.to_json(),
            }
            for a in r.attempts
        ],
    }


def _counts(results: Sequence[TaskResult]) -> dict[str, int]:
    """Tasks per state: every terminal state (0 when none), then the others present, in the
    order they first appear."""
    seen = Counter(r.state for r in results)  # in the order states first appear
    counts = {s.value: seen[s] for s in TaskState if s.terminal}
    counts.update((s.value, n) for s, n in seen.items() if not s.terminal)
    return counts


def _peak(starts: list[float], ends: list[float]) -> int:
    """The most attempts running at once (an attempt ending when another starts is not)."""
    starts.sort()
    ends.sort()
    peak = done = 0
    last = len(ends)
    for begun, at in enumerate(starts, 1):
        while done < last and ends[done] <= at:
            done += 1
        if begun - done > peak:
            peak = begun - done
    return peak


def aggregate(
    results: Sequence[TaskResult],
    *,
    slots: int = 0,
    name: str = "",
    run_id: str = "",
    decisions: Sequence[Decision] = (),
    started_at: float = 0.0,
    agent_slots: Mapping[str, int] | None = None,
    capacity: Mapping[str, float] | None = None,
) -> BatchResult:
    """Merge task results into a ``BatchResult`` (times relative to the batch's start).

    ``slots`` is the number of task slots that were available; 0 means "as many as were used at
    the peak", so utilisation then measures how well the peak was sustained. ``capacity`` gives,
    per agent instance, the slot-seconds it offered during the batch (for pools that grew and
    shrank); when given, utilisation is busy slot-seconds over the sum of it (capped by
    ``slots`` times the makespan).
    """
    counts = _counts(results)
    total = 0.0
    starts: list[float] = []
    ends: list[float] = []
    busy: dict[str, float] = {}
    attempts = 0
    end = 0.0
    for r in results:
        finished = r.finished_at
        if finished is not None and finished > end:
            end = finished
        tried = r.attempts
        attempts += len(tried)
        for a in tried:
            fin = a.finished_at
            if fin is None:
                continue
            began = a.started_at
            total += fin - began
            inst = a.agent_instance
            busy[inst] = busy.get(inst, 0.0) + fin - began
            starts.append(began)
            ends.append(fin)
            if fin > end:
                end = fin
    peak = _peak(starts, ends)
    makespan = end
    used_slots = slots or peak
    agents: dict[str, dict[str, float]] = {}
    available = used_slots * makespan
    if capacity:
        available = min(available, sum(capacity.values())) if slots else sum(capacity.values())
    for inst in sorted(set(busy) | set(capacity or {})):
        secs = busy.get(inst, 0.0)
        n = (agent_slots or {}).get(inst, 0)
        offered = (capacity or {}).get(inst, n * makespan)
        agents[inst] = {
            "busy_s": round(secs, 6),
            "slots": n,
            "available_s": round(offered, 6),
            "utilisation": round(secs / offered, 4) if offered > 0 else 0.0,
        }
    return BatchResult(
        results=list(results),
        counts=counts,
        makespan_s=makespan,
        total_run_s=total,
        speedup=total / makespan if makespan > 0 else 0.0,
        peak_parallelism=peak,
        utilisation=total / available if available > 0 else 0.0,
        dispatches_per_task=attempts / len(results) if results else 0.0,
        name=name,
        run_id=run_id,
        slots=used_slots,
        decisions=list(decisions),
        started_at=started_at,
        agents=agents,
    )
