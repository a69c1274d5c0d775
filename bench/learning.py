"""Learned routing against baselines, on the simulator: agents whose true success rates and speeds
are hidden and differ from their declared proficiencies.

A seeded world has ``--capabilities`` capabilities and ``--agents`` agent specs (two instances
each, one or two slots), each offering three capabilities with a declared proficiency drawn in
0.5..0.95, while its true success rate on that capability is drawn independently of it
(``--truth bimodal``: good, 0.85..0.97, one time in three, else poor, 0.30..0.65; or
``uniform`` in 0.35..0.95) and its true mean duration in 20..80 s (lognormal, cv 0.5).
Tasks arrive one at a time (Poisson) at ``--load`` of the pool's capacity, so several agents
are usually free and the choice matters; each task has one attempt, so a task's success is that
of the routing choice.

Policies, on the very same arrivals and per-task luck (common random numbers): the scheduler's
learned routing (posterior mean, and Thompson sampling); the fixed-weight score users have today
(the previous router's score, 0.4 capability, 0.3 load, 0.2 success, 0.1 speed, never
learning); the previous router learning (``sim.legacy``: free instances only, at most 32 by
declared proficiency); random; round-robin; least-loaded; and an oracle that knows the true
rates and speeds and picks the best free agent.

The overclaimer case: ``--overclaimers`` (40) instances of one spec that declares 0.95 and fails
every task, beside one honest spec declaring 0.5 (four slots, true success 0.9); 2,000 tasks at
40% of the honest agent's capacity. The old router, blind past 32 candidates indexed by declared
proficiency, gave every task to the overclaimers.

Cumulative regret is, summed over tasks, the true success rate of the best agent for the
task's capability minus that of the agent chosen (the oracle's own regret is what capacity
costs: the best agent is not always free).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bench._table import print_json, print_table, stamp
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import TaskState
from metaagent.sim.driver import Simulation
from metaagent.sim.legacy import LegacyWeights, previous_router
from metaagent.sim.policies import least_loaded, oracle, random_choice, round_robin
from metaagent.sim.spec import (
    SIMULATED,
    AgentPool,
    Duration,
    Profile,
    SimSettings,
    SimSpec,
)
from metaagent.sim.workload import Workload

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.learning import Learning
    from metaagent.core.routing.router import Chooser

FIXED = LegacyWeights(capability=0.4, fit=0.0, load=0.3, success=0.2, speed=0.1)
TARGET_ORACLE_GAP = 0.02  # learned success rate at most this far below the oracle's
TARGET_FIXED_LEAD = 0.10  # and at least this far above the fixed-weight score's


@dataclass(frozen=True, slots=True)
class World:
    """A seeded set of agents with declared and true qualities."""

    pools: tuple[AgentPool, ...]
    truth: dict[tuple[str, str], tuple[float, float]]  # (spec, cap) -> (success, mean_s)
    capacity_per_s: float


Truth = Literal["bimodal", "uniform"]


def build_world(n_agents: int, n_caps: int, seed: int, truth: Truth = "bimodal") -> World:
    """Agents offering three capabilities each; what they declare says nothing of the truth.

    ``bimodal``: an agent is good at a capability (true success 0.85..0.97) one time in three
    and poor at it (0.30..0.65) otherwise. ``uniform``: true success is drawn in 0.35..0.95.
    """
    rng = random.Random(seed)
    caps = [f"cap{c}" for c in range(n_caps)]
    pools: list[AgentPool] = []
    rates: dict[tuple[str, str], tuple[float, float]] = {}
    capacity = 0.0
    for a in range(n_agents):
        # Every capability is offered by several agents: agent a starts at capability a.
        offered = [caps[(a + k * max(1, n_caps // 3)) % n_caps] for k in range(3)]
        offered = list(dict.fromkeys(offered))
        declared = {c: round(rng.uniform(0.5, 0.95), 2) for c in offered}
        slots = rng.choice((1, 2))
        name = f"agent{a}"
        pools.append(AgentPool(AgentSpec(name, declared, SIMULATED, concurrency=slots), 2))
        mean = 0.0
        for c in offered:
            if truth == "uniform":
                p = rng.uniform(0.35, 0.95)
            else:
                p = rng.uniform(0.85, 0.97) if rng.random() < 1 / 3 else rng.uniform(0.30, 0.65)
            rates[(name, c)] = (round(p, 3), round(rng.uniform(20, 80), 1))
            mean += rates[(name, c)][1] / len(offered)
        capacity += 2 * slots / mean
    return World(tuple(pools), rates, capacity)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    settings: SimSettings
    chooser: Callable[[World, int, Learning], Chooser | None]


def _none(world: World, seed: int, learning: Learning) -> Chooser | None:
    return None


def _truth(world: World) -> Callable[[str, str], tuple[float, float]]:
    return lambda spec, cap: world.truth[(spec, cap)]


POLICIES: tuple[Policy, ...] = (
    Policy("learned", SimSettings(), _none),
    Policy("learned (thompson)", SimSettings(routing="thompson"), _none),
    Policy("fixed weights", SimSettings(learn=False), lambda w, s, k: previous_router(k, FIXED)),
    Policy("previous router", SimSettings(), lambda w, s, k: previous_router(k)),
    Policy("random", SimSettings(), lambda w, s, k: random_choice(s)),
    Policy("round-robin", SimSettings(), lambda w, s, k: round_robin()),
    Policy("least-loaded", SimSettings(), lambda w, s, k: least_loaded()),
    Policy("oracle", SimSettings(), lambda w, s, k: oracle(_truth(w))),
)


def overclaimer_world(overclaimers: int) -> World:
    """One spec of ``overclaimers`` instances declaring 0.95 that fails everything, and one
    honest spec declaring 0.5 (one instance, four slots) that succeeds nine times in ten."""
    liar = AgentSpec("overclaimer", {"code": 0.95}, SIMULATED)
    honest = AgentSpec("honest", {"code": 0.5}, SIMULATED, concurrency=4)
    truth = {("overclaimer", "code"): (0.0, 20.0), ("honest", "code"): (0.9, 20.0)}
    return World((AgentPool(liar, overclaimers), AgentPool(honest, 1)), truth, 4 / 20.0)


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """One policy on one world: success rates, and regret after each checkpoint."""

    success_rate: float
    last_window_success_rate: float
    regret_at: dict[int, float]


def run_policy(
    policy: Policy, world: World, tasks: int, load: float, seed: int, checkpoints: Sequence[int]
) -> PolicyRun:
    caps = sorted({c for p in world.pools for c in p.spec.capabilities})
    profiles: dict[tuple[str | None, str | None], Profile] = {
        key: Profile(Duration("lognormal", mean, 0.5), 1.0 - p)
        for key, (p, mean) in world.truth.items()
    }
    spec = SimSpec(
        pools=world.pools,
        workload=Workload(
            tasks,
            capabilities=dict.fromkeys(caps, 1.0),
            complexity=(0.2, 0.8),
            arrival_rate_per_s=load * world.capacity_per_s,
            max_attempts=1,
            seed=seed,
        ),
        profiles=profiles,
        settings=policy.settings,
        seed=seed,
        scale_by_complexity=False,
    )
    sim = Simulation(spec)
    sim.scheduler.router.chooser = policy.chooser(world, seed, sim.scheduler.learning)
    sim.run()
    best = {cap: max(p for (_, c), (p, _) in world.truth.items() if c == cap) for cap in caps}
    regret = 0.0
    successes = last_window = 0
    window = max(1, tasks // 10)
    regret_at: dict[int, float] = {}
    for k, rid in enumerate(sim.run_ids, start=1):
        rec = next(iter(sim.scheduler.runs[rid].tasks.values()))
        ok = rec.state is TaskState.SUCCEEDED
        successes += ok
        if k > tasks - window:
            last_window += ok
        if rec.attempts:
            cap = rec.task.capability
            regret += best[cap] - world.truth[(rec.attempts[0].agent, cap)][0]
        if k in checkpoints:
            regret_at[k] = regret
    return PolicyRun(successes / tasks, last_window / window, regret_at)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench learning", description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per world (10,000)")
    parser.add_argument("--worlds", type=int, default=3, help="seeded worlds averaged (3)")
    parser.add_argument("--agents", type=int, default=8, help="agent specs (8, 2 instances each)")
    parser.add_argument("--capabilities", type=int, default=6, help="capabilities (6)")
    parser.add_argument("--load", type=float, default=0.4, help="arrivals / capacity (0.4)")
    parser.add_argument(
        "--truth", choices=("bimodal", "uniform"), default="bimodal",
        help="how true success rates are drawn (bimodal: good or poor at each capability)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--overclaimers", type=int, default=40, help="overclaimer instances (40)")
    parser.add_argument("--overclaim-tasks", type=int, default=2000, help="their tasks (2,000)")
    args = parser.parse_args(argv)
    if args.tasks < 10 or args.worlds < 1 or args.agents < 2 or args.capabilities < 1:
        parser.error("need --tasks >= 10, --worlds >= 1, --agents >= 2, --capabilities >= 1")
    if not 0 < args.load < 1.5:
        parser.error("--load must be within (0, 1.5)")
    checkpoints = sorted({c for c in (1000, 2000, 5000, args.tasks) if c <= args.tasks})

    runs: dict[str, list[PolicyRun]] = {p.name: [] for p in POLICIES}
    for w in range(args.worlds):
        world = build_world(args.agents, args.capabilities, args.seed + w, args.truth)
        for p in POLICIES:
            runs[p.name].append(
                run_policy(p, world, args.tasks, args.load, args.seed + w, checkpoints)
            )

    liars = overclaimer_world(args.overclaimers)
    over = {
        p.name: run_policy(p, liars, args.overclaim_tasks, 0.4, args.seed, [args.overclaim_tasks])
        for p in POLICIES
        if p.name in ("learned", "learned (thompson)", "previous router", "oracle")
    }

    def avg(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    rows: list[list[object]] = []
    summary: dict[str, dict[str, object]] = {}
    for name, seen in runs.items():
        sr = avg([r.success_rate for r in seen])
        lw = avg([r.last_window_success_rate for r in seen])
        regret = {k: avg([r.regret_at[k] for r in seen]) for k in checkpoints}
        rows.append([name, round(100 * sr, 2), round(100 * lw, 2),
                     *(round(regret[k], 1) for k in checkpoints)])  # fmt: skip
        summary[name] = {
            "success_rate": round(sr, 5),
            "last_window_success_rate": round(lw, 5),
            "regret": {str(k): round(v, 2) for k, v in regret.items()},
            "per_world_success_rate": [round(r.success_rate, 5) for r in seen],
        }
    print(
        f"Routing {args.tasks:,} single-attempt tasks arriving at {args.load:.0%} of capacity; "
        f"{args.agents} agent specs x 2 instances, {args.capabilities} capabilities, "
        f"{args.truth} true success rates; mean of {args.worlds} seeded worlds"
    )
    print_table(
        "Success rate (%) and cumulative regret (expected failures vs the best agent per task)",
        ["policy", "success %", f"last {max(1, args.tasks // 10):,} %"]
        + [f"regret@{k:,}" for k in checkpoints],
        rows,
    )

    print_table(
        f"Overclaimers: {args.overclaimers} instances declaring 0.95 that fail every task, one "
        f"honest 0.5 agent (4 slots, true 0.9); {args.overclaim_tasks:,} tasks",
        ["policy", "success %"],
        [[name, round(100 * r.success_rate, 2)] for name, r in over.items()],
    )
    over_gap = over["oracle"].success_rate - over["learned"].success_rate

    def rate(name: str) -> float:
        return avg([r.success_rate for r in runs[name]])

    learned = rate("learned")
    best_learned = max(learned, rate("learned (thompson)"))
    orc = rate("oracle")
    fixed = rate("fixed weights")
    gap = orc - learned
    lead = learned - fixed
    print(
        f"\nlearned vs oracle: {100 * gap:+.2f} points below "
        f"(target <= {100 * TARGET_ORACLE_GAP:g}); learned vs fixed weights: "
        f"{100 * lead:+.2f} points (target >= {100 * TARGET_FIXED_LEAD:g}); "
        f"best learned mode: {100 * best_learned:.2f}%"
    )
    out: dict[str, object] = {
        "bench": "learning",
        "date": stamp(),
        "tasks": args.tasks,
        "worlds": args.worlds,
        "agents": args.agents,
        "capabilities": args.capabilities,
        "load": args.load,
        "truth": args.truth,
        "seed": args.seed,
        "policies": summary,
        "overclaimers": {name: round(r.success_rate, 5) for name, r in over.items()},
        "targets": {
            "learned_within_2_points_of_oracle": {
                "target": f"oracle - learned <= {TARGET_ORACLE_GAP} (success rate, all tasks)",
                "value": round(gap, 5),
                "target_met": gap <= TARGET_ORACLE_GAP,
            },
            "overclaimers_within_2_points_of_oracle": {
                "target": f"oracle - learned <= {TARGET_ORACLE_GAP} with "
                f"{args.overclaimers} overclaimers",
                "value": round(over_gap, 5),
                "target_met": over_gap <= TARGET_ORACLE_GAP,
            },
            "learned_10_points_above_fixed_weights": {
                "target": f"learned - fixed weights >= {TARGET_FIXED_LEAD} (success rate)",
                "value": round(lead, 5),
                "target_met": lead >= TARGET_FIXED_LEAD,
            },
        },
    }
    print_json(out)
    return out
