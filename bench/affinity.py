"""Group affinity on the simulator: agent switches and dispatches per task, with and without it.

Groups of five related tasks (one capability each: a root, three siblings that need it, and a
task that joins them) arrive as runs at ``--load`` of the pool's capacity (Poisson). The pool:
three agent specs with different proficiencies on two capabilities, ``--instances`` of each,
two or three slots per instance. Attempts take about 30 s (lognormal, cv 0.5) and fail 5% of
the time.

With affinity, a task of a group prefers the instance that ran the group's previous task when
that instance is free and scores within ``affinity_margin`` (0.05) of the best; without it the
same tasks are routed as if they had no group. A switch is a dispatch of a group's task to an
instance other than the one that ran the group's previous dispatch. Both runs meet the same
arrivals and per-task luck (common random numbers).
"""

from __future__ import annotations

import argparse
import random
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask
from metaagent.sim.driver import Simulation
from metaagent.sim.spec import SIMULATED, AgentPool, Duration, Profile, SimSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.decisions import RouteTask

TARGET_FEWER = 0.15
MEAN_S = 30.0
SPECS = (
    AgentSpec("senior", {"python": 0.9, "tests": 0.7}, SIMULATED, concurrency=2),
    AgentSpec("junior", {"python": 0.7, "tests": 0.85}, SIMULATED, concurrency=2),
    AgentSpec("generalist", {"python": 0.8, "tests": 0.8}, SIMULATED, concurrency=3),
)


def workload(
    groups: int, rate_per_s: float, rng: random.Random
) -> list[tuple[float, tuple[AgentTask, ...]]]:
    """``groups`` runs of one five-task group each, arriving at ``rate_per_s``."""
    runs: list[tuple[float, tuple[AgentTask, ...]]] = []
    t = 0.0
    for g in range(groups):
        cap = rng.choice(("python", "tests"))
        name = f"g{g}"
        root = _task(name, 0, cap, (), rng)
        mids = [_task(name, i, cap, (root.id,), rng) for i in (1, 2, 3)]
        join = _task(name, 4, cap, tuple(m.id for m in mids), rng)
        runs.append((t, (root, *mids, join)))
        t += rng.expovariate(rate_per_s)
    return runs


def _task(group: str, i: int, cap: str, deps: tuple[str, ...], rng: random.Random) -> AgentTask:
    complexity = round(rng.uniform(0.3, 0.9), 3)
    return AgentTask(f"{group}.{i}", cap, depends_on=deps, group=group, complexity=complexity)


def measure(
    affinity: bool, groups: int, instances: int, load: float, seed: int
) -> dict[str, float]:
    slots = instances * sum(s.concurrency for s in SPECS)
    rate = load * slots / MEAN_S / 5  # five tasks per group
    runs = workload(groups, rate, random.Random(seed))
    spec = SimSpec(
        pools=tuple(AgentPool(s, instances) for s in SPECS),
        runs=tuple(runs),
        default=Profile(Duration("lognormal", MEAN_S, 0.5), 0.05),
        seed=seed,
        ignore_groups=not affinity,
    )
    kept = [0, 0.0, 0.0]  # affinity choices, score given up in total, at most

    def seen(r: RouteTask) -> None:
        if r.reason.startswith("affinity") and r.candidates:
            loss = max(0.0, r.candidates[0].score - r.score)
            kept[0] += 1
            kept[1] += loss
            kept[2] = max(kept[2], loss)

    result = Simulation(spec, on_route=seen).run()
    return {
        "switches": result.switches,
        "switches_per_group": result.switches_per_group,
        "switches_per_task": result.switches / result.tasks,
        "dispatches_per_task": result.dispatches_per_task,
        "success_rate": result.success_rate,
        "makespan_s": result.makespan_s,
        "queue_wait_p95_s": result.queue_wait_s["p95"],
        "affinity_choices": kept[0],
        "mean_score_given_up": kept[1] / kept[0] if kept[0] else 0.0,
        "max_score_given_up": kept[2],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench affinity", description=__doc__)
    parser.add_argument("--groups", type=int, default=2000, help="groups of 5 tasks (2,000)")
    parser.add_argument("--instances", type=int, default=2, help="instances per spec (2)")
    parser.add_argument("--load", type=float, default=0.6, help="arrivals / capacity (0.6)")
    parser.add_argument("--seeds", type=int, default=3, help="seeded runs averaged (3)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.groups < 1 or args.instances < 1 or args.seeds < 1 or not 0 < args.load < 1.5:
        parser.error("need --groups, --instances, --seeds >= 1 and 0 < --load < 1.5")

    cells = {
        name: [
            measure(on, args.groups, args.instances, args.load, args.seed + k)
            for k in range(args.seeds)
        ]
        for name, on in (("without affinity", False), ("with affinity", True))
    }

    def mean(name: str, key: str) -> float:
        return sum(c[key] for c in cells[name]) / len(cells[name])

    keys = (
        "switches_per_group", "switches_per_task", "dispatches_per_task", "success_rate",
        "makespan_s", "queue_wait_p95_s", "mean_score_given_up", "max_score_given_up",
    )  # fmt: skip
    print(
        f"{args.groups:,} groups of 5 tasks arriving at {args.load:.0%} of capacity; "
        f"{len(SPECS)} specs x {args.instances} instances; mean of {args.seeds} seeds"
    )
    print_table(
        "Switches and dispatches per task",
        [
            "routing",
            "switches/group",
            "switches/task",
            "dispatches/task",
            "success",
            "makespan s",
            "p95 wait s",
            "mean score given up",
            "max given up",
        ],
        [[name, *(round(mean(name, k), 4) for k in keys)] for name in cells],
    )
    before = mean("without affinity", "switches_per_task")
    after = mean("with affinity", "switches_per_task")
    fewer = 1.0 - after / before if before else 0.0
    d_before = mean("without affinity", "dispatches_per_task")
    d_after = mean("with affinity", "dispatches_per_task")
    print(
        f"\nswitches per task: {before:.3f} -> {after:.3f} ({fewer:.1%} fewer; target >= "
        f"{TARGET_FEWER:.0%}); dispatches per task: {d_before:.3f} -> {d_after:.3f}"
    )
    out: dict[str, object] = {
        "bench": "affinity",
        "date": stamp(),
        "groups": args.groups,
        "instances": args.instances,
        "load": args.load,
        "seeds": args.seeds,
        "seed": args.seed,
        "results": {name: {k: round(mean(name, k), 5) for k in keys} for name in cells},
        "switch_reduction": round(fewer, 5),
        "targets": {
            "switches_15_percent_fewer": {
                "target": f"switches per task at least {TARGET_FEWER:.0%} fewer with affinity",
                "value": round(fewer, 5),
                "target_met": fewer >= TARGET_FEWER,
            },
        },
    }
    print_json(out)
    return out
