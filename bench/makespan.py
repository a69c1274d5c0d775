"""Makespan of random DAGs on the simulator, against the lower bound, for three queue orders.

Each seeded DAG has ``--tasks`` tasks in ``--layers`` layers of random width; a task depends on
one to three tasks of the one to three layers above it, so chains differ in length. Each task
needs one of four capabilities whose typical durations differ (5, 10, 20 and 40 s), scaled by
the task's complexity (0..1: 0.5x to 1.5x) and lognormal noise (cv 0.3). ``--agents``
generalist agents with two slots each (fewer slots than the DAG's parallel width) run it; no
attempt fails, so every task runs once, and every order meets the same durations.

The bound is max(critical path, total work / slots) over the durations that occurred. Orders:
``fifo`` (ready order), ``priority`` (the tasks' own priorities, set at random 0..2 as users set
them without knowing the critical path, then FIFO) and ``critical path`` (HEFT upward rank).
The scheduler's estimate of a task's duration is its capability's learned mean times
(0.5 + complexity): ``critical path`` is measured with those means learned from earlier runs
(warm) and without (cold: every capability looks alike). Aging (a task's priority rises with
its wait) is off in these rows; ``critical path + aging`` keeps the scheduler's default aging,
and ``scheduler default`` is what a user gets out of the box: priority (with aging), then rank.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from bench._shapes import run_shapes
from bench._table import print_json, print_table, stamp
from metaagent.core.graph import TaskGraph
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask
from metaagent.sim.driver import Simulation
from metaagent.sim.spec import (
    SIMULATED,
    AgentPool,
    Duration,
    Ordering,
    Profile,
    SimSettings,
    SimSpec,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

TARGET_RATIO = 1.1
CAPS = {"lint": 5.0, "test": 10.0, "build": 20.0, "analyse": 40.0}
NO_AGING = 1e12


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    ordering: Ordering
    warm: bool
    aging: bool = False


VARIANTS = (
    Variant("fifo", "fifo", warm=True),
    Variant("priority", "priority", warm=True),
    Variant("critical path (cold)", "critical_path", warm=False),
    Variant("critical path", "critical_path", warm=True),
    Variant("critical path + aging", "critical_path", warm=True, aging=True),
    Variant("scheduler default", "scheduler", warm=True, aging=True),
)


def random_dag(n: int, layers: int, rng: random.Random) -> list[AgentTask]:
    """A layered DAG of ``n`` tasks with random widths and edges reaching up to 3 layers up."""
    weights = [rng.uniform(0.3, 1.7) for _ in range(layers)]
    total = sum(weights)
    widths = [max(1, round(n * w / total)) for w in weights]
    widths[-1] = max(1, widths[-1] + n - sum(widths))
    while sum(widths) > n:  # rounding gave too many: trim the widest layers
        widths[widths.index(max(widths))] -= 1
    caps = list(CAPS)
    tasks: list[AgentTask] = []
    levels: list[list[str]] = []
    for layer, width in enumerate(widths):
        ids: list[str] = []
        for _ in range(width):
            tid = f"t{len(tasks)}"
            deps: set[str] = set()
            if layer:
                for _ in range(rng.randint(1, 3)):
                    up = min(layer, rng.choices((1, 2, 3), (0.6, 0.25, 0.15))[0])
                    deps.add(rng.choice(levels[layer - up]))
            tasks.append(
                AgentTask(
                    tid,
                    rng.choice(caps),
                    priority=rng.choice((0, 0, 1, 2)),
                    depends_on=tuple(sorted(deps)),
                    complexity=round(rng.random(), 3),
                    max_attempts=1,
                )
            )
            ids.append(tid)
        levels.append(ids)
    return tasks


@dataclass(frozen=True, slots=True)
class DagRun:
    """One DAG under every order: the bound, and each order's makespan and utilisation."""

    bound_s: float
    critical_path_s: float
    work_per_slot_s: float
    makespan_s: dict[str, float]
    utilisation: dict[str, float]

    def ratio(self, order: str) -> float:
        return self.makespan_s[order] / self.bound_s

    def to_json(self) -> dict[str, object]:
        return {
            "bound_s": round(self.bound_s, 3),
            "critical_path_s": round(self.critical_path_s, 3),
            "work_per_slot_s": round(self.work_per_slot_s, 3),
            "makespan_s": {k: round(v, 3) for k, v in self.makespan_s.items()},
            "ratio": {k: round(self.ratio(k), 4) for k in self.makespan_s},
        }


def run_dag(tasks: list[AgentTask], agents: int, seed: int) -> DagRun:
    generalist = AgentSpec("generalist", dict.fromkeys(CAPS, 0.8), SIMULATED, concurrency=2)
    profiles: dict[tuple[str | None, str | None], Profile] = {
        (None, cap): Profile(Duration("lognormal", mean, 0.3)) for cap, mean in CAPS.items()
    }
    makespan: dict[str, float] = {}
    utilisation: dict[str, float] = {}
    bounds: list[tuple[float, float, float]] = []
    slots = 2 * agents
    for v in VARIANTS:
        spec = SimSpec(
            pools=(AgentPool(generalist, agents),),
            tasks=tuple(tasks),
            profiles=profiles,
            settings=SimSettings(aging_interval_s=None if v.aging else NO_AGING),
            seed=seed,
            ordering=v.ordering,
            warm_start=20 if v.warm else 0,
        )
        sim = Simulation(spec)
        result = sim.run()
        run = sim.scheduler.runs[sim.run_ids[0]]
        took = {tid: rec.attempts[0].duration_s for tid, rec in run.tasks.items()}
        path, _ = TaskGraph(tasks).critical_path(partial(_lookup, took))
        work = sum(took.values()) / slots
        bounds.append((max(path, work), path, work))
        makespan[v.name] = result.makespan_s
        utilisation[v.name] = result.utilisation
    bound, path, work = bounds[0]
    if any(abs(b[0] - bound) > 1e-6 * bound for b in bounds):
        raise RuntimeError("task durations differ between orders: the comparison is unfair")
    return DagRun(bound, path, work, makespan, utilisation)


def _lookup(took: dict[str, float], task: AgentTask) -> float:
    return took[task.id]


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench makespan", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per DAG (1,000)")
    parser.add_argument("--layers", type=int, default=25, help="layers per DAG (25)")
    parser.add_argument("--agents", type=int, default=12, help="agents, 2 slots each (12)")
    parser.add_argument("--dags", type=int, default=5, help="seeded DAGs averaged (5)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--shape-sizes",
        default="100,500,2000",
        help="task counts of the real-workflow shapes (100,500,2000)",
    )
    parser.add_argument("--shape-slots", type=int, default=16, help="their identical slots")
    args = parser.parse_args(argv)
    if args.tasks < 2 or not 1 <= args.layers <= args.tasks or args.agents < 1 or args.dags < 1:
        parser.error("need --tasks >= 2, 1 <= --layers <= --tasks, --agents >= 1, --dags >= 1")

    dags: list[DagRun] = []
    widths = []
    for d in range(args.dags):
        tasks = random_dag(args.tasks, args.layers, random.Random(args.seed + d))
        widths.append(max(len(level) for level in _levels(tasks)))
        dags.append(run_dag(tasks, args.agents, args.seed + d))
    names = [v.name for v in VARIANTS]

    def mean(name: str) -> float:
        return sum(d.ratio(name) for d in dags) / len(dags)

    def mean_use(name: str) -> float:
        return sum(d.utilisation[name] for d in dags) / len(dags)

    print(
        f"{args.dags} random DAGs of {args.tasks:,} tasks in {args.layers} layers (widest level "
        f"{min(widths)}..{max(widths)} tasks) on {2 * args.agents} slots"
    )
    print_table(
        "Makespan / lower bound max(critical path, work / slots), per DAG and mean",
        ["order", *[f"dag {d}" for d in range(args.dags)], "mean", "utilisation"],
        [
            [
                name,
                *[round(d.ratio(name), 3) for d in dags],
                round(mean(name), 3),
                round(mean_use(name), 3),
            ]
            for name in names
        ],
    )
    print_table(
        "Lower bound per DAG (seconds)",
        ["dag", "critical path", "work / slots", "bound"],
        [
            [d, round(x.critical_path_s, 1), round(x.work_per_slot_s, 1), round(x.bound_s, 1)]
            for d, x in enumerate(dags)
        ],
    )
    sizes = [int(x) for x in args.shape_sizes.split(",") if x.strip()]
    shapes = run_shapes(sizes, args.shape_slots, args.seed)
    print_table(
        f"Real-workflow shapes on {args.shape_slots} identical slots, the default order: told "
        "estimate_s vs a HEFT list schedule; told nothing vs ranks by per-capability true means",
        ["shape", "tasks", "HEFT s", "told s", "told / HEFT", "per-cap ref s", "learned s",
         "learned / ref"],
        [[r["shape"], r["tasks"], r["heft_s"], r["told_s"], r["told_vs_heft"],
          r["per_capability_s"], r["learned_s"], r["learned_vs_per_capability"]]
         for r in shapes],
    )  # fmt: skip
    told_worst = max(float(str(r["told_vs_heft"])) for r in shapes)
    learned_worst = max(float(str(r["learned_vs_per_capability"])) for r in shapes)
    default = mean("scheduler default")
    cp = mean("critical path")
    fifo = mean("fifo")
    print(
        f"\ncritical path: {cp:.3f}x the bound (target <= {TARGET_RATIO}); FIFO: {fifo:.3f}x; "
        f"priority: {mean('priority'):.3f}x; scheduler default: {mean('scheduler default'):.3f}x"
    )
    out: dict[str, object] = {
        "bench": "makespan",
        "date": stamp(),
        "tasks": args.tasks,
        "layers": args.layers,
        "slots": 2 * args.agents,
        "dags": args.dags,
        "seed": args.seed,
        "mean_ratio": {name: round(mean(name), 4) for name in names},
        "per_dag": [d.to_json() for d in dags],
        "shapes": shapes,
        "targets": {
            "default_order_within_1_1x_of_bound": {
                "target": f"mean makespan / bound <= {TARGET_RATIO} with the default order",
                "value": round(default, 4),
                "target_met": default <= TARGET_RATIO,
            },
            "told_within_1_03x_of_heft_every_shape": {
                "target": "default order with estimate_s: makespan / HEFT <= 1.03 on every one",
                "value": told_worst,
                "target_met": told_worst <= 1.03,
            },
            "learned_within_1_03x_of_per_capability_ranks": {
                "target": "default order told nothing: makespan / list schedule ranked by true "
                "per-capability means <= 1.03 on every one",
                "value": learned_worst,
                "target_met": learned_worst <= 1.03,
            },
            "critical_path_within_1_1x_of_bound": {
                "target": f"mean makespan / bound <= {TARGET_RATIO} with critical-path order",
                "value": round(cp, 4),
                "target_met": cp <= TARGET_RATIO,
            },
            "critical_path_beats_fifo": {
                "target": "mean makespan with critical-path order < with FIFO",
                "value": round(fifo - cp, 4),
                "target_met": cp < fifo,
            },
        },
    }
    print_json(out)
    return out


def _levels(tasks: list[AgentTask]) -> list[list[str]]:
    """Tasks by depth (longest chain of dependencies above them)."""
    depth: dict[str, int] = {}
    for t in tasks:  # submitted in topological order
        depth[t.id] = 1 + max((depth[d] for d in t.depends_on), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for tid, k in depth.items():
        out[k].append(tid)
    return out
