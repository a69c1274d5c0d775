"""Cost-aware routing against always-strong, always-cheap and today's routing, on the simulator.

Three agent tiers offer one capability: ``cheap``, ``mid`` and ``strong``, whose attempts cost
1 : 5 : 25 (``--unit-usd`` per cheap attempt: 0.002, 0.01, 0.05 USD) and take 2, 3 and 5 s
(lognormal, cv 0.3). Their hidden chance of failure grows with the task's complexity at
different rates: ``failure_rate + failure_growth * max(0, complexity - failure_from)``:

- cheap:  2% + 2.5 per unit above 0.3 (success 0.98 up to 0.3, 0.73 at 0.4, 0.48 at 0.5);
- mid:    2% + 2.0 per unit above 0.65 (0.98 up to 0.65, 0.68 at 0.8, 0.28 at 1.0);
- strong: 1% + 0.02 per unit (0.99 flat-ish, 0.97 at 1.0).

Declared proficiencies say less (0.6, 0.8, 0.95: what a user would guess) and the router is
never told the curves: it learns from outcomes, from a cold start. Costs are declared
(``cost_per_call_usd``: what a price list says) and reported by every attempt (as a runner's
usage); routing learns the reported mean. ``--tasks`` independent tasks of uniformly random
complexity in 0..1 arrive as a Poisson stream at ``--load`` of the strong pool's capacity,
each with the default retry policy (3 attempts, failed agents avoided by the soft fallback).

Policies, on the same arrivals and per-task luck (common random numbers):

- always-strong: a pool of strong agents only (the same instances and slots as strong has);
- always-cheap: cheap agents only;
- earliest finish: today's default routing over all three tiers (weights fixed, price weight 0);
- fixed-weight score: the previous router's fixed-weight score (``sim.legacy``), never learning;
- cost-aware: ``routing: {mode: thompson, objective: cheapest_meeting, quality_target: Q}``.

Success is the share of tasks that finally succeeded (with their retries): what a user gets;
the first attempt's success is shown too. Cost is the sum of every attempt's reported cost,
failed ones included: what the bill shows. Target: the cost-aware policy spends at least 50%
less than always-strong, with a success at least 98% of always-strong's (mean over seeds).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent.core.routing.weights import RoutingWeights
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import Outcome, TaskState
from metaagent.sim.driver import Simulation
from metaagent.sim.legacy import previous_router
from metaagent.sim.spec import SIMULATED, AgentPool, Duration, Profile, SimSettings, SimSpec
from metaagent.sim.workload import Workload

if TYPE_CHECKING:
    from collections.abc import Sequence

TARGET_SAVING = 0.50  # cost at least this much lower than always-strong's
TARGET_QUALITY = 0.98  # with success at least this share of always-strong's
CAP = "work"


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    declared: float  # proficiency the user declares
    price: float  # cost of an attempt, in cheap attempts
    mean_s: float
    failure_rate: float
    failure_growth: float
    failure_from: float


TIERS = (
    Tier("cheap", 0.6, 1.0, 3.0, 0.01, 2.5, 0.4),
    Tier("mid", 0.8, 5.0, 3.0, 0.01, 2.0, 0.75),
    Tier("strong", 0.95, 25.0, 3.0, 0.005, 0.02, 0.0),
)


@dataclass(slots=True)
class Tally:
    """What one policy came to on one seed."""

    tasks: int
    succeeded: int
    first_ok: int
    attempts: int
    cost_usd: float
    makespan_s: float
    by_tier: dict[str, int]  # attempts per tier


def world(
    tasks: int, seed: int, instances: int, load: float, unit_usd: float, only: str | None = None
) -> SimSpec:
    """The three tiers (or ``only`` one of them) and a Poisson stream of tasks."""
    pools = []
    profiles: dict[tuple[str | None, str | None], Profile] = {}
    for t in TIERS:
        if only is not None and t.name != only:
            continue
        spec = AgentSpec(t.name, {CAP: t.declared}, SIMULATED, concurrency=2,
                         cost_per_call_usd=t.price * unit_usd)  # fmt: skip
        pools.append(AgentPool(spec, instances))
        profiles[(t.name, CAP)] = Profile(
            Duration("lognormal", t.mean_s, 0.3), t.failure_rate, t.failure_growth,
            t.failure_from, t.price * unit_usd,
        )  # fmt: skip
    strong = TIERS[-1]
    # ``load`` of what the strong pool finishes per second (at complexity 0.5, 1 s per unit)
    rate = load * instances * 2 / strong.mean_s
    workload = Workload(count=tasks, capabilities={CAP: 1.0}, complexity=(0.0, 1.0),
                        arrival_rate_per_s=rate)  # fmt: skip
    return SimSpec(pools=tuple(pools), workload=workload, profiles=profiles, seed=seed,
                   name="cost", scale_by_complexity=False)  # fmt: skip


def run(spec: SimSpec, policy: str, target: float) -> Tally:
    """Simulate ``spec`` under ``policy`` and measure success and spend."""
    settings = SimSettings()
    if policy == "cost-aware":
        weights = RoutingWeights(objective="cheapest_meeting", quality_target=target)
        settings = SimSettings(routing="thompson", weights=weights)
    elif policy == "fixed-weight score":
        settings = SimSettings(learn=False)
    spec = replace(spec, settings=settings)
    sim = Simulation(spec)
    if policy == "fixed-weight score":
        sim.scheduler.router.chooser = previous_router(sim.scheduler.learning)
    result = sim.run()
    out = Tally(result.tasks, 0, 0, 0, result.cost_usd, result.makespan_s, {})
    for rid in sim.run_ids:
        for rec in sim.scheduler.runs[rid].tasks.values():
            out.succeeded += rec.state is TaskState.SUCCEEDED
            if rec.attempts:
                out.first_ok += rec.attempts[0].outcome is Outcome.SUCCEEDED
            out.attempts += len(rec.attempts)
            for a in rec.attempts:
                out.by_tier[a.agent] = out.by_tier.get(a.agent, 0) + 1
    return out


HEADERS = ("policy", "success %", "1st attempt %", "m$ / task", "saving %", "% of strong",
           "cheap", "mid", "strong", "makespan s")  # fmt: skip
POLICIES = ("always-strong", "always-cheap", "earliest finish", "fixed-weight score", "cost-aware")


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench cost", description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per seed (3,000)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds averaged (3)")
    parser.add_argument("--seed", type=int, default=5, help="first seed (5)")
    parser.add_argument("--instances", type=int, default=4, help="instances per tier (4, 2 slots)")
    parser.add_argument("--load", type=float, default=0.5, help="arrivals / strong capacity")
    parser.add_argument("--target", type=float, default=0.95, help="quality_target (0.95)")
    parser.add_argument("--unit-usd", type=float, default=0.002, help="a cheap attempt's cost")
    args = parser.parse_args(argv)
    seeds = [args.seed + k for k in range(args.seeds)]
    runs: dict[str, list[Tally]] = {p: [] for p in POLICIES}
    for seed in seeds:
        for policy in POLICIES:
            only = {"always-strong": "strong", "always-cheap": "cheap"}.get(policy)
            spec = world(args.tasks, seed, args.instances, args.load, args.unit_usd, only)
            runs[policy].append(run(spec, policy, args.target))

    def avg(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    base = runs["always-strong"]
    base_cost = avg([o.cost_usd for o in base])
    base_ok = avg([o.succeeded / o.tasks for o in base])
    rows: list[list[object]] = []
    summary: dict[str, dict[str, object]] = {}
    for name, seen in runs.items():
        ok = avg([o.succeeded / o.tasks for o in seen])
        first = avg([o.first_ok / o.tasks for o in seen])
        cost = avg([o.cost_usd for o in seen])
        per_task = avg([o.cost_usd / o.tasks for o in seen])
        tiers = {t.name: avg([o.by_tier.get(t.name, 0) / o.tasks for o in seen]) for t in TIERS}
        saving = 1.0 - cost / base_cost if base_cost else 0.0
        rows.append([
            name, round(100 * ok, 2), round(100 * first, 2), round(per_task * 1000, 3),
            round(100 * saving, 1), round(100 * ok / base_ok, 2),
            *(round(tiers[t.name], 3) for t in TIERS),
            round(avg([o.makespan_s for o in seen]), 1),
        ])  # fmt: skip
        summary[name] = {
            "success_rate": round(ok, 5),
            "first_attempt_success_rate": round(first, 5),
            "cost_usd": round(cost, 4),
            "cost_per_task_usd": round(per_task, 6),
            "saving_vs_strong": round(saving, 4),
            "success_vs_strong": round(ok / base_ok, 5),
            "attempts_per_task": {k: round(v, 4) for k, v in tiers.items()},
            "makespan_s": round(avg([o.makespan_s for o in seen]), 2),
            "per_seed_cost_usd": [round(o.cost_usd, 4) for o in seen],
            "per_seed_success_rate": [round(o.succeeded / o.tasks, 5) for o in seen],
        }
    print(
        f"{args.tasks:,} tasks of uniform complexity 0..1 per seed, {args.seeds} seeds; tiers "
        f"cheap/mid/strong at 1:5:25 x ${args.unit_usd:g} per attempt, {args.instances} "
        f"instances x 2 slots each; cost-aware: cheapest_meeting, quality_target "
        f"{args.target:g}, thompson, cold start"
    )
    print_table(
        "Final success (with retries), first-attempt success, spend (all attempts, failed "
        "included) and attempts per task by tier",
        HEADERS,
        rows,
    )
    aware = summary["cost-aware"]
    saving = float(aware["saving_vs_strong"])  # type: ignore[arg-type]
    quality = float(aware["success_vs_strong"])  # type: ignore[arg-type]
    print(
        f"\ncost-aware vs always-strong: {100 * saving:.1f}% lower cost (target >= "
        f"{100 * TARGET_SAVING:g}%), success {100 * quality:.2f}% of strong's (target >= "
        f"{100 * TARGET_QUALITY:g}%)"
    )
    out: dict[str, object] = {
        "bench": "cost",
        "date": stamp(),
        "tasks": args.tasks,
        "seeds": seeds,
        "instances": args.instances,
        "load": args.load,
        "quality_target": args.target,
        "unit_usd": args.unit_usd,
        "policies": summary,
        "targets": {
            "cost_50pct_below_strong": {
                "target": f"1 - cost(cost-aware) / cost(always-strong) >= {TARGET_SAVING}",
                "value": round(saving, 4),
                "target_met": saving >= TARGET_SAVING,
            },
            "success_98pct_of_strong": {
                "target": f"success(cost-aware) / success(always-strong) >= {TARGET_QUALITY}",
                "value": round(quality, 5),
                "target_met": quality >= TARGET_QUALITY,
            },
        },
    }
    print_json(out)
    return out
