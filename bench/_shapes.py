"""Workloads shaped like real workflows for ``bench makespan``, against a HEFT list schedule.

Shapes (each task's duration drawn once, lognormal with a heavy tail, cv 1.5, by capability):

- ``fan-out/fan-in``: a root, a wide level, a merge, a wider level, a final merge (as in
  Montage- or CyberShake-like traces), 100..2,000 tasks;
- ``chains beside levels``: four long chains of slow tasks next to wide levels of quick ones;
- ``random layered``: the layered random DAG of ``bench makespan`` with these durations.

On ``--slots`` identical one-slot agents, the scheduler's *default* order runs each workload
twice: told every task's duration (``estimate_s``), and told nothing (it learns each
capability's mean within the run). The references are list schedules with the same slots:
HEFT's (ranks by the true durations) for the first; ranks by each capability's true mean
duration (all that learning per capability can know) for the second.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import TYPE_CHECKING

from bench._listsched import list_schedule, upward_rank
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask
from metaagent.sim.driver import Simulation
from metaagent.sim.spec import SIMULATED, AgentPool, SimSpec

if TYPE_CHECKING:
    from collections.abc import Callable

MEANS = {"fetch": 4.0, "project": 30.0, "merge": 60.0, "analyse": 15.0}


def _draw(cap: str, rng: random.Random) -> float:
    cv = 1.5
    s2 = math.log1p(cv * cv)
    return math.exp(math.log(MEANS[cap]) - s2 / 2 + math.sqrt(s2) * rng.gauss(0.0, 1.0))


def fan(n: int, rng: random.Random) -> tuple[list[AgentTask], dict[str, float]]:
    wide1 = max(1, (n - 3) // 3)
    wide2 = max(1, n - 3 - wide1)
    tasks = [AgentTask("root", "fetch", complexity=0.5)]
    tasks += [AgentTask(f"p{i}", "project", depends_on=("root",)) for i in range(wide1)]
    tasks.append(AgentTask("merge", "merge", depends_on=tuple(f"p{i}" for i in range(wide1))))
    tasks += [AgentTask(f"a{i}", "analyse", depends_on=("merge",)) for i in range(wide2)]
    tasks.append(AgentTask("final", "merge", depends_on=tuple(f"a{i}" for i in range(wide2))))
    return tasks, {t.id: _draw(t.capability, rng) for t in tasks}


def chains(n: int, rng: random.Random) -> tuple[list[AgentTask], dict[str, float]]:
    tasks: list[AgentTask] = []
    length = max(2, n // 20)
    for c in range(4):
        for i in range(length):
            deps = (f"c{c}.{i - 1}",) if i else ()
            tasks.append(AgentTask(f"c{c}.{i}", "merge", depends_on=deps))
    left = n - len(tasks)
    width = max(1, left // 5)
    prev: tuple[str, ...] = ()
    for level in range(5):
        ids = [f"w{level}.{i}" for i in range(width)]
        for tid in ids:
            tasks.append(AgentTask(tid, "fetch", depends_on=prev[:1] if prev else ()))
        prev = tuple(ids)
    return tasks, {t.id: _draw(t.capability, rng) for t in tasks}


def layered(n: int, rng: random.Random) -> tuple[list[AgentTask], dict[str, float]]:
    caps = list(MEANS)
    tasks: list[AgentTask] = []
    levels: list[list[str]] = []
    for layer in range(max(2, n // 40)):
        ids = []
        for _ in range(rng.randint(10, 70)):
            tid = f"t{len(tasks)}"
            above = [t for lv in levels[-3:] for t in lv]
            deps = tuple(sorted(set(rng.sample(above, min(len(above), rng.randint(1, 3))))))
            tasks.append(AgentTask(tid, rng.choice(caps), depends_on=deps if layer else ()))
            ids.append(tid)
        levels.append(ids)
    return tasks, {t.id: _draw(t.capability, rng) for t in tasks}


SHAPES: dict[str, Callable[[int, random.Random], tuple[list[AgentTask], dict[str, float]]]] = {
    "fan-out/fan-in": fan,
    "chains beside levels": chains,
    "random layered": layered,
}


def simulated(tasks: list[AgentTask], took: dict[str, float], slots: int, told: bool) -> float:
    if told:
        tasks = [replace(t, estimate_s=took[t.id]) for t in tasks]
    spec = SimSpec(
        pools=(AgentPool(AgentSpec("w", dict.fromkeys(MEANS, 0.8), SIMULATED), slots),),
        tasks=tuple(tasks), durations=took, scale_by_complexity=False,
    )  # fmt: skip
    return Simulation(spec).run().makespan_s


def references(tasks: list[AgentTask], took: dict[str, float], slots: int) -> tuple[float, float]:
    """(HEFT by true durations, list schedule ranked by per-capability true means)."""
    names = ["w"] * slots

    def duration(task: AgentTask, agent: str) -> float:
        return took[task.id]

    heft = list_schedule(tasks, names, duration, upward_rank(tasks, lambda t: took[t.id]))
    by_cap: dict[str, list[float]] = {}
    for t in tasks:
        by_cap.setdefault(t.capability, []).append(took[t.id])
    means = {c: sum(v) / len(v) for c, v in by_cap.items()}
    per_cap = list_schedule(
        tasks, names, duration, upward_rank(tasks, lambda t: means[t.capability])
    )
    return heft, per_cap


def run_shapes(sizes: list[int], slots: int, seed: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, make in SHAPES.items():
        for n in sizes:
            tasks, took = make(n, random.Random(seed + n))
            heft, per_cap = references(tasks, took, slots)
            told = simulated(tasks, took, slots, told=True)
            learned = simulated(tasks, took, slots, told=False)
            rows.append({
                "shape": name, "tasks": len(tasks), "heft_s": round(heft, 2),
                "per_capability_s": round(per_cap, 2), "told_s": round(told, 2),
                "learned_s": round(learned, 2), "told_vs_heft": round(told / heft, 4),
                "learned_vs_per_capability": round(learned / per_cap, 4),
            })  # fmt: skip
    return rows
