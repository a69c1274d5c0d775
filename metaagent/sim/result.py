"""What a simulation measured: makespan, utilisation, queue waits, decisions, switches."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(slots=True)
class AgentUse:
    """How much one kind of agent was used."""

    instances: int
    slots: int
    attempts: int
    busy_s: float
    utilisation: float


@dataclass(slots=True)
class SimResult:
    """What a simulation measured. Times are virtual seconds from the first submission.

    ``utilisation`` is busy slot-seconds over (slots x makespan). ``queue_wait_s`` has the
    percentiles of ready -> first start. ``switches`` counts, within each group of tasks,
    dispatches that went to another instance than the group's previous one.
    """

    name: str
    seed: int
    tasks: int
    instances: int
    slots: int
    makespan_s: float
    busy_s: float
    utilisation: float
    queue_wait_s: dict[str, float]
    states: dict[str, int]
    success_rate: float
    attempt_success_rate: float
    decisions: dict[str, int]
    dispatches: int
    dispatches_per_task: float
    groups: int
    switches: int
    switches_per_group: float
    by_agent: dict[str, AgentUse] = field(default_factory=dict)
    cost_usd: float = 0.0  # what every attempt reported it cost (the profiles' cost_usd)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "seed": self.seed,
            "tasks": self.tasks,
            "instances": self.instances,
            "slots": self.slots,
            "makespan_s": round(self.makespan_s, 6),
            "busy_s": round(self.busy_s, 6),
            "utilisation": round(self.utilisation, 6),
            "queue_wait_s": {k: round(v, 6) for k, v in self.queue_wait_s.items()},
            "states": dict(self.states),
            "success_rate": round(self.success_rate, 6),
            "attempt_success_rate": round(self.attempt_success_rate, 6),
            "decisions": dict(self.decisions),
            "dispatches": self.dispatches,
            "dispatches_per_task": round(self.dispatches_per_task, 6),
            "groups": self.groups,
            "switches": self.switches,
            "switches_per_group": round(self.switches_per_group, 6),
            "cost_usd": round(self.cost_usd, 6),
            "by_agent": {
                name: {
                    "instances": u.instances,
                    "slots": u.slots,
                    "attempts": u.attempts,
                    "busy_s": round(u.busy_s, 6),
                    "utilisation": round(u.utilisation, 6),
                }
                for name, u in self.by_agent.items()
            },
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]
