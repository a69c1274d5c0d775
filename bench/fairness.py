"""Fair share between runs, on the simulator: a small run submitted after a huge one.

A run of ``--big`` independent tasks (1 s each, fixed) is submitted at time 0 to ``--slots``
one-slot agents; ``--at`` seconds later, a run of ``--small`` tasks (a chain of two and three
independent ones, 1 s each) arrives. Its makespan (arrival to its last task's end) is compared
with its makespan alone on the same pool. Runs share slots by weighted fair share (each run's
virtual time is the expected slot-seconds it was given over its weight), so the small run is
served at once instead of after the whole big one (first come, first served).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bench._table import print_json, print_table, stamp
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask
from metaagent.sim.driver import Simulation
from metaagent.sim.spec import SIMULATED, AgentPool, Duration, Profile, SimSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

TARGET_RATIO = 2.0


def small_run(n: int) -> tuple[AgentTask, ...]:
    tasks = [AgentTask("s0", "work"), AgentTask("s1", "work", depends_on=("s0",))]
    tasks += [AgentTask(f"s{i}", "work") for i in range(2, n)]
    return tuple(tasks[:n])


def small_makespan(big: int, small: int, slots: int, at: float) -> tuple[float, float]:
    """(the small run's makespan, the whole simulation's makespan)."""
    pool = AgentPool(AgentSpec("w", {"work": 0.9}, SIMULATED), slots)
    runs: list[tuple[float, tuple[AgentTask, ...]]] = []
    if big:
        runs.append((0.0, tuple(AgentTask(f"b{i}", "work") for i in range(big))))
    runs.append((at if big else 0.0, small_run(small)))
    spec = SimSpec(
        pools=(pool,), runs=tuple(runs), default=Profile(Duration("fixed", 1.0, 0.0)),
        scale_by_complexity=False,
    )  # fmt: skip
    sim = Simulation(spec)
    result = sim.run()
    rid = sim.run_ids[-1]
    run = sim.scheduler.runs[rid]
    end = max(r.finished_at or 0.0 for r in run.tasks.values())
    return end - run.started_at, result.makespan_s


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench fairness", description=__doc__)
    parser.add_argument("--big", type=int, default=100_000, help="tasks of the big run")
    parser.add_argument("--small", type=int, default=5, help="tasks of the small run (5)")
    parser.add_argument("--slots", type=int, default=64, help="one-slot agents (64)")
    parser.add_argument("--at", type=float, default=100.0, help="the small run's arrival (s)")
    args = parser.parse_args(argv)
    if args.big < 1 or args.small < 2 or args.slots < 1 or args.at < 0:
        parser.error("need --big >= 1, --small >= 2, --slots >= 1, --at >= 0")
    alone, _ = small_makespan(0, args.small, args.slots, 0.0)
    shared, total = small_makespan(args.big, args.small, args.slots, args.at)
    ratio = shared / alone
    print(f"a {args.small}-task run arriving at {args.at:g}s during a {args.big:,}-task run, "
          f"{args.slots} slots, 1 s tasks")  # fmt: skip
    print_table(
        "Makespan of the small run",
        ["case", "makespan (s)"],
        [["alone", round(alone, 3)], ["after the big run was submitted", round(shared, 3)],
         ["first come, first served would be about", round(args.big / args.slots, 1)]],
    )  # fmt: skip
    print(f"\nratio {ratio:.2f} (target <= {TARGET_RATIO:g}); the big run took {total:,.0f} s")
    out: dict[str, object] = {
        "bench": "fairness", "date": stamp(), "big": args.big, "small": args.small,
        "slots": args.slots, "at_s": args.at, "alone_s": round(alone, 4),
        "shared_s": round(shared, 4), "big_makespan_s": round(total, 2),
        "targets": {
            "small_run_within_2x_of_alone": {
                "target": f"small run makespan / alone <= {TARGET_RATIO}",
                "value": round(ratio, 4),
                "target_met": ratio <= TARGET_RATIO,
            },
        },
    }  # fmt: skip
    print_json(out)
    return out
