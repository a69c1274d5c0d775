"""The simulator: the real scheduler on virtual time, with seeded outcomes. No clock, no sleeps."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from metaagent import AgentSpec, AgentTask, TaskState, WorkflowError
from metaagent.core.instances import AgentInstance
from metaagent.core.learning import ArmStats
from metaagent.sim.driver import Simulation, simulate
from metaagent.sim.loading import load_simulation, parse_simulation
from metaagent.sim.policies import least_loaded, oracle, random_choice, round_robin
from metaagent.sim.search import find_smallest_pool
from metaagent.sim.spec import (
    SIMULATED,
    AgentPool,
    Duration,
    Profile,
    SimSettings,
    SimSpec,
    parse_duration,
    profiles_from_stats,
    scale_pools,
)
from metaagent.sim.workload import Workload, generate_tasks
from metaagent.testing import task

if TYPE_CHECKING:
    from metaagent.core.decisions import RouteTask

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "simulate"
FIXED_10S = Profile(Duration("fixed", 10.0))


def agent(name: str, caps: dict[str, float] | None = None, slots: int = 1) -> AgentSpec:
    return AgentSpec(name, caps or {"code": 0.8}, SIMULATED, concurrency=slots)


def spec(*pools: AgentPool, tasks: tuple[AgentTask, ...] = (), **kw: object) -> SimSpec:
    kw.setdefault("default", FIXED_10S)
    kw.setdefault("scale_by_complexity", False)
    return SimSpec(pools=pools, tasks=tasks, **kw)  # type: ignore[arg-type]


# --- exact results on fixed durations -----------------------------------------------------------


def test_a_chain_on_one_agent_takes_the_sum_of_its_durations() -> None:
    r = simulate(spec(AgentPool(agent("a")), tasks=(task("x"), task("y", "x"), task("z", "y"))))
    assert r.makespan_s == pytest.approx(30.0)
    assert r.utilisation == pytest.approx(1.0)
    assert r.states == {"succeeded": 3}
    assert r.dispatches_per_task == 1.0
    assert r.queue_wait_s["max"] == 0.0  # each task starts the moment it is ready


def test_queue_waits_are_measured_from_ready_to_start() -> None:
    tasks = tuple(task(f"t{i}") for i in range(4))
    r = simulate(spec(AgentPool(agent("a")), tasks=tasks))
    assert r.makespan_s == pytest.approx(40.0)
    # waits 0, 10, 20, 30 s: nearest-rank percentiles
    assert r.queue_wait_s["p50"] == pytest.approx(10.0)
    assert r.queue_wait_s["p95"] == pytest.approx(30.0)
    assert r.queue_wait_s["mean"] == pytest.approx(15.0)


def test_utilisation_counts_idle_slots() -> None:
    # Two slots, a chain of two: one slot is idle throughout.
    r = simulate(spec(AgentPool(agent("a", slots=2)), tasks=(task("x"), task("y", "x"))))
    assert r.makespan_s == pytest.approx(20.0)
    assert r.utilisation == pytest.approx(0.5)
    assert r.by_agent["a"].attempts == 2
    assert r.by_agent["a"].utilisation == pytest.approx(0.5)


def test_named_durations_override_the_profile() -> None:
    r = simulate(
        spec(AgentPool(agent("a")), tasks=(task("x"), task("y", "x")), durations={"x": 3.5})
    )
    assert r.makespan_s == pytest.approx(13.5)


def test_complexity_scales_the_sampled_duration() -> None:
    tasks = (task("x", complexity=1.0),)
    s = replace(spec(AgentPool(agent("a")), tasks=tasks), scale_by_complexity=True)
    assert simulate(s).makespan_s == pytest.approx(15.0)


def test_failures_retry_then_fail_and_skip_the_dependents() -> None:
    s = spec(
        AgentPool(agent("a")),
        tasks=(task("x", max_attempts=2), task("y", "x")),
        default=Profile(Duration("fixed", 10.0), failure_rate=1.0),
        settings=SimSettings(retry_base_s=1.0, retry_jitter=0.0),
    )
    r = simulate(s)
    assert r.states == {"failed": 1, "skipped": 1}
    assert r.decisions["route_task"] == 2
    assert r.decisions["retry_task"] == 1
    assert r.decisions["fail_task"] == 1
    assert r.decisions["skip_task"] == 1
    assert r.attempt_success_rate == 0.0
    assert r.makespan_s == pytest.approx(10.0 + 1.0 + 10.0)  # attempt, back-off, attempt


def test_outcome_luck_fixes_which_attempts_fail() -> None:
    # failure rate 0.5: a luck below it fails, above it succeeds; attempts without one draw
    luck = {("x", 1): 0.1, ("x", 2): 0.2, ("x", 3): 0.9, ("y", 1): 0.7}
    s = spec(
        AgentPool(agent("a")),
        tasks=(task("x", max_attempts=5), task("y", "x")),
        default=Profile(Duration("fixed", 10.0), failure_rate=0.5),
        settings=SimSettings(retry_base_s=1.0, retry_jitter=0.0),
        outcome_luck=luck,
    )
    r = simulate(s)
    assert r.states == {"succeeded": 2}
    assert r.decisions["retry_task"] == 2
    # x: fail, back-off 1 s, fail, back-off 2 s, succeed; then y succeeds at once
    assert r.makespan_s == pytest.approx(10.0 + 1.0 + 10.0 + 2.0 + 10.0 + 10.0)


def test_an_attempt_past_its_timeout_ends_at_the_timeout() -> None:
    r = simulate(spec(AgentPool(agent("a")), tasks=(task("x", timeout_s=4.0, max_attempts=1),)))
    assert r.states == {"failed": 1}
    assert r.makespan_s == pytest.approx(4.0)


def test_tasks_that_fail_with_errors_fail_alone_without_quarantining_the_agent() -> None:
    # Every attempt fails with an error (the task's outcome, not an agent fault): each task
    # fails after its attempts and the breaker, which counts agent faults only, stays closed.
    tasks = tuple(task(f"t{i}", max_attempts=3) for i in range(6))
    s = spec(AgentPool(agent("a")), tasks=tasks, default=Profile(Duration("fixed", 1.0), 1.0))
    r = simulate(s)
    assert r.states == {"failed": 6}
    assert r.decisions.get("quarantine_agent", 0) == 0


# --- queue order --------------------------------------------------------------------------------


def test_critical_path_order_runs_the_long_chain_first() -> None:
    # Four independent tasks are submitted before a chain of three; two slots.
    tasks = (*(task(f"x{i}") for i in range(4)), task("c1"), task("c2", "c1"), task("c3", "c2"))
    base = spec(AgentPool(agent("a", slots=2)), tasks=tasks)
    fifo = simulate(replace(base, ordering="fifo"))
    cp = simulate(replace(base, ordering="critical_path"))
    assert fifo.makespan_s == pytest.approx(50.0)
    assert cp.makespan_s == pytest.approx(40.0)
    assert simulate(base).makespan_s == pytest.approx(40.0)  # the scheduler's own order


def test_priority_order_follows_priorities_and_ignores_rank() -> None:
    tasks = (
        task("c1"),
        task("c2", "c1"),
        task("c3", "c2"),
        *(task(f"x{i}", priority=1) for i in range(4)),
    )
    base = spec(AgentPool(agent("a", slots=2)), tasks=tasks)
    assert simulate(replace(base, ordering="priority")).makespan_s == pytest.approx(50.0)
    assert simulate(replace(base, ordering="critical_path")).makespan_s == pytest.approx(40.0)


# --- determinism and common random numbers ------------------------------------------------------


def _random_spec(seed: int) -> SimSpec:
    return SimSpec(
        pools=(
            AgentPool(agent("a", {"code": 0.9, "docs": 0.5}, 2), 2),
            AgentPool(agent("b", {"code": 0.6, "docs": 0.9}), 3),
        ),
        workload=Workload(400, layers=8, complexity=(0.1, 0.9), group_size=4),
        default=Profile(Duration("lognormal", 20.0, 0.8), 0.1),
        profiles={("b", "code"): Profile(Duration("exponential", 30.0), 0.3)},
        seed=seed,
    )


def test_same_seed_same_result() -> None:
    a = simulate(_random_spec(3)).to_json()
    b = simulate(_random_spec(3)).to_json()
    assert a == b
    assert a["tasks"] == 400


def test_another_seed_another_result() -> None:
    assert simulate(_random_spec(3)).makespan_s != simulate(_random_spec(4)).makespan_s


def test_policies_meet_the_same_luck() -> None:
    # One kind of agent: whichever instance a task goes to, its first attempt takes the same
    # time, so two policies give every task the same duration.
    s = spec(
        AgentPool(agent("a"), 3),
        tasks=tuple(task(f"t{i}") for i in range(30)),
        default=Profile(Duration("lognormal", 5.0, 1.0)),
    )

    def durations(chooser: object) -> dict[str, float]:
        sim = Simulation(s, chooser=chooser)  # type: ignore[arg-type]
        sim.run()
        run = sim.scheduler.runs[sim.run_ids[0]]
        return {tid: rec.attempts[0].duration_s for tid, rec in run.tasks.items()}

    assert durations(random_choice(1)) == pytest.approx(durations(round_robin()))


# --- groups -------------------------------------------------------------------------------------


def test_switches_are_counted_per_group_with_or_without_affinity() -> None:
    tasks = tuple(task(f"t{i}", *(() if i == 0 else (f"t{i - 1}",)), group="g") for i in range(5))
    routes: list[RouteTask] = []
    base = spec(AgentPool(agent("a", slots=2), 3), tasks=tasks)
    with_affinity = Simulation(base, on_route=routes.append).run()
    assert with_affinity.groups == 1
    assert with_affinity.switches == 0  # the free instance that ran the last step takes the next
    assert len(routes) == 5
    assert all(r.instance == routes[0].instance for r in routes)
    without = simulate(replace(base, ignore_groups=True))
    assert without.groups == 1  # still counted by group
    assert without.switches >= with_affinity.switches


# --- workloads ----------------------------------------------------------------------------------


def test_generated_layers_depend_on_the_layer_above() -> None:
    w = Workload(100, capabilities={"code": 1, "docs": 3}, layers=5, max_parents=3, seed=9)
    [(at, tasks)] = generate_tasks(w, ["code", "docs"], seed=0)
    assert at == 0.0
    assert len(tasks) == 100
    layer = {t.id: int(t.id[1:]) // 20 for t in tasks}
    for t in tasks:
        assert (len(t.depends_on) == 0) == (layer[t.id] == 0)
        assert all(layer[d] == layer[t.id] - 1 for d in t.depends_on)
        assert 1 <= len(t.depends_on) <= 3 or layer[t.id] == 0
    docs = sum(t.capability == "docs" for t in tasks)
    assert 60 <= docs <= 90  # three to one, give or take


def test_generated_groups_share_a_capability() -> None:
    [(_, tasks)] = generate_tasks(Workload(40, group_size=4, seed=1), ["a", "b", "c"], seed=0)
    groups: dict[str, set[str]] = {}
    for t in tasks:
        assert t.group is not None
        groups.setdefault(t.group, set()).add(t.capability)
    assert len(groups) == 10
    assert all(len(caps) == 1 for caps in groups.values())


def test_arrivals_come_one_task_per_run_at_the_given_rate() -> None:
    runs = generate_tasks(Workload(2000, arrival_rate_per_s=4.0, seed=2), ["a"], seed=0)
    assert len(runs) == 2000
    times = [at for at, _ in runs]
    assert times == sorted(times)
    assert times[-1] / 1999 == pytest.approx(0.25, rel=0.1)  # mean gap 1/rate


def test_generated_workloads_are_seeded() -> None:
    w = Workload(50, layers=5, complexity=(0.0, 1.0), priorities={0: 1, 2: 1})
    assert generate_tasks(w, ["a", "b"], seed=5) == generate_tasks(w, ["a", "b"], seed=5)
    assert generate_tasks(w, ["a", "b"], seed=5) != generate_tasks(w, ["a", "b"], seed=6)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("count", 0, "count"),
        ("layers", 0, "layers"),
        ("complexity", (0.8, 0.2), "complexity"),
        ("arrival_rate_per_s", -1.0, "arrival_rate_per_s"),
        ("max_attempts", 0, "max_attempts"),
    ],
)
def test_workload_problems_name_the_field(field: str, value: object, message: str) -> None:
    w = replace(Workload(10), **{field: value})
    assert any(message in p for p in w.problems())


def test_arrivals_cannot_form_layers() -> None:
    assert any("layers" in p for p in Workload(10, layers=2, arrival_rate_per_s=1.0).problems())


# --- distributions and profiles -----------------------------------------------------------------


@pytest.mark.parametrize("dist", ["lognormal", "exponential", "uniform", "fixed"])
def test_durations_have_the_mean_they_are_given(dist: str) -> None:
    d = Duration(dist, 12.0, 0.5)  # type: ignore[arg-type]
    rng = random.Random(1)
    n = 20_000
    mean = sum(d.sample(rng.gauss(0.0, 1.0), rng.random()) for _ in range(n)) / n
    assert mean == pytest.approx(12.0, rel=0.03)


def test_uniform_durations_stay_within_their_span() -> None:
    d = Duration("uniform", 10.0, 0.2)
    half = 10.0 * 0.2 * math.sqrt(3.0)
    assert d.sample(0.0, 0.0) == pytest.approx(10.0 - half)
    assert d.sample(0.0, 0.999999) == pytest.approx(10.0 + half, rel=1e-5)


def test_profiles_are_looked_up_most_specific_first() -> None:
    p = {
        ("a", "code"): Profile(Duration("fixed", 1.0)),
        ("a", None): Profile(Duration("fixed", 2.0)),
        (None, "code"): Profile(Duration("fixed", 3.0)),
    }
    s = spec(AgentPool(agent("a")), profiles=p, default=Profile(Duration("fixed", 4.0)))
    assert s.profile("a", "code").duration.mean_s == 1.0
    assert s.profile("a", "docs").duration.mean_s == 2.0
    assert s.profile("b", "code").duration.mean_s == 3.0
    assert s.profile("b", "docs").duration.mean_s == 4.0


def test_profiles_from_learned_statistics() -> None:
    stats = [("a", "code", ArmStats(8, 2, 10, 42.0)), ("b", "code", ArmStats(0, 0, 0, 0.0))]
    out = profiles_from_stats(stats, cv=0.3)
    assert list(out) == [("a", "code")]
    assert out[("a", "code")] == Profile(Duration("lognormal", 42.0, 0.3), 0.2)


def test_warm_start_seeds_the_routing_statistics() -> None:
    s = spec(AgentPool(agent("a")), tasks=(task("x"),), warm_start=10,
             default=Profile(Duration("fixed", 7.0), 0.2))  # fmt: skip
    sim = Simulation(s)
    assert sim.scheduler.learning.arms[("a", "code")] == ArmStats(8, 2, 10, 7.0)


# --- pools --------------------------------------------------------------------------------------


def test_scale_pools_keeps_proportions_and_one_of_each() -> None:
    pools = (AgentPool(agent("a"), 1), AgentPool(agent("b"), 3))
    assert [p.count for p in scale_pools(pools, 2)] == [1, 1]
    assert [p.count for p in scale_pools(pools, 10)] == [3, 7]
    assert sum(p.count for p in scale_pools(pools, 101)) == 101
    with pytest.raises(ValueError, match="cannot cover 2"):
        scale_pools(pools, 1)


def test_scale_pools_by_demand_weights() -> None:
    pools = (AgentPool(agent("a"), 1), AgentPool(agent("b"), 1), AgentPool(agent("c"), 5))
    assert [p.count for p in scale_pools(pools, 9, {"a": 3.0, "b": 1.0})] == [6, 2, 1]
    assert [p.count for p in scale_pools(pools, 3, {"a": 1.0})] == [1, 1, 1]
    assert [p.count for p in scale_pools(pools, 6, {})] == [2, 2, 2]  # no demand: even


def test_the_pool_search_grows_the_bottleneck_first() -> None:
    # Only "busy" serves the work; "idle" agents never run anything.
    busy = AgentPool(agent("busy", {"code": 0.9}), 1)
    idle = AgentPool(agent("idle", {"docs": 0.9}), 1)
    s = spec(busy, idle, tasks=tuple(task(f"t{i}") for i in range(8)))
    found = find_smallest_pool(s, 20.0)
    assert found.met
    assert {p.spec.name: p.count for p in found.pools} == {"busy": 4, "idle": 1}
    even = find_smallest_pool(s, 20.0, shape="proportional")
    assert even.instances == 7  # the idle kind grows with it


def test_smallest_pool_meeting_a_deadline() -> None:
    s = spec(AgentPool(agent("a"), 1), tasks=tuple(task(f"t{i}") for i in range(12)))
    found = find_smallest_pool(s, 30.0)
    assert found.met
    assert found.instances == 4  # 12 tasks of 10 s in 30 s
    assert found.result.makespan_s == pytest.approx(30.0)
    assert all(m > 30.0 for n, m in found.tried if n < 4)


def test_a_deadline_shorter_than_the_critical_path_is_reported_unmet() -> None:
    s = spec(AgentPool(agent("a"), 1), tasks=(task("x"), task("y", "x"), task("z", "y")))
    found = find_smallest_pool(s, 25.0)
    assert not found.met
    assert found.result.makespan_s == pytest.approx(30.0)
    assert found.instances == 1  # the smallest pool with the best makespan


# --- baseline policies --------------------------------------------------------------------------


def _instances(n: int) -> list[AgentInstance]:
    return [AgentInstance(f"i{k}", agent(f"s{k % 2}"), 2) for k in range(n)]


def test_round_robin_cycles_and_skips_busy_instances() -> None:
    insts = _instances(3)
    choose = round_robin()
    x = task("x")
    assert [choose(x, insts).id for _ in range(4)] == ["i0", "i1", "i2", "i0"]  # type: ignore[union-attr]
    assert choose(x, [insts[0], insts[2]]).id == "i2"  # type: ignore[union-attr]


def test_least_loaded_prefers_free_slots_then_fewer_attempts() -> None:
    insts = _instances(3)
    insts[0].running = 1
    insts[1].tasks_done = 5
    assert least_loaded()(task("x"), insts).id == "i2"  # type: ignore[union-attr]


def test_random_choice_is_seeded() -> None:
    insts = _instances(5)
    a, b = random_choice(3), random_choice(3)
    assert [a(task("x"), insts) for _ in range(10)] == [b(task("x"), insts) for _ in range(10)]


def test_oracle_picks_the_truly_best_then_the_fastest() -> None:
    insts = _instances(4)
    truth = {("s0", "code"): (0.6, 10.0), ("s1", "code"): (0.9, 50.0)}
    pick = oracle(lambda s, c: truth[(s, c)])(task("x"), insts)
    assert pick is not None
    assert pick.spec.name == "s1"


def test_the_oracle_beats_random_routing_in_the_simulator() -> None:
    good, bad = agent("good", {"code": 0.5}), agent("bad", {"code": 0.9})
    truth = {("good", "code"): (0.95, 10.0), ("bad", "code"): (0.4, 10.0)}
    profiles = {k: Profile(Duration("fixed", 10.0), 1 - p) for k, (p, _) in truth.items()}
    s = SimSpec(
        pools=(AgentPool(good, 2), AgentPool(bad, 2)),
        workload=Workload(300, arrival_rate_per_s=0.03, max_attempts=1, seed=1),
        profiles=profiles,  # type: ignore[arg-type]
        seed=1,
    )
    best = simulate(s, chooser=oracle(lambda a, c: truth[(a, c)])).success_rate
    coin = simulate(s, chooser=random_choice(1)).success_rate
    assert best > 0.9
    assert best > coin + 0.15


# --- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["catalog-10k.yaml", "release.yaml"])
def test_examples_load(name: str) -> None:
    s = load_simulation(EXAMPLES / name)
    assert s.pools
    assert s.tasks or s.workload


def test_catalog_example_has_every_role() -> None:
    s = load_simulation(EXAMPLES / "catalog-10k.yaml")
    assert len(s.pools) == 22
    assert all(p.count == 2 for p in s.pools)
    assert s.workload is not None
    assert s.workload.count == 10_000
    assert s.profile("documentation_writer", "python").failure_rate == 0.2
    # a field left out comes from the less specific profile
    assert s.profile("code_reviewer", "lint").duration.mean_s == 30.0


def _raw(**over: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "name": "t",
        "agents": [{"name": "a", "capabilities": {"code": 0.9}}],
        "tasks": [{"id": "x", "capability": "code", "duration_s": 2}],
    }
    raw.update(over)
    return raw


def test_a_small_file_simulates() -> None:
    s = parse_simulation(_raw(), source="t.yaml", base_dir=Path("."))
    assert simulate(s).makespan_s == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"profiles": [{"agent": "zz"}]}, "t.yaml: profiles[0].agent: unknown agent 'zz'"),
        ({"profiles": [{"capability": "zz"}]}, "t.yaml: profiles[0].capability"),
        ({"generate": {"count": 5}}, "exactly one of `tasks:`"),
        ({"tasks": [{"id": "x", "capability": "zz"}]}, "tasks[0] (id 'x').capability"),
        ({"tasks": [{"id": "x", "capability": "code", "depends_on": ["x"]}]}, "cycle"),
        ({"agents": [{"capabilities": {"code": 1}}]}, "agents[0]: give a name, a role"),
        ({"default_profile": {"duration": {"dist": "zipf", "mean_s": 1}}},
         "default_profile.duration.dist"),
        ({"default_profile": {"failure_rate": 2}}, "default_profile.failure_rate"),
        ({"seed": "x"}, "seed"),
    ],
)  # fmt: skip
def test_file_errors_name_the_file_and_the_field(over: dict[str, object], message: str) -> None:
    with pytest.raises(WorkflowError) as info:
        parse_simulation(_raw(**over), source="t.yaml", base_dir=Path("."))
    assert message in str(info.value)


def test_generate_errors_name_the_field() -> None:
    raw = _raw(tasks=None, generate={"count": 5, "layers": 2, "arrival_rate_per_s": 1.0})
    del raw["tasks"]
    with pytest.raises(WorkflowError, match=r"generate\.arrival_rate_per_s"):
        parse_simulation(raw, source="t.yaml", base_dir=Path("."))


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="cannot read simulation"):
        load_simulation(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(WorkflowError, match=r"bad\.yaml:\d+:\d+: invalid YAML"):
        load_simulation(bad)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("90", 90), ("1.5h", 5400)]
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0s", "5q", "1h30", "-5"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_run_of_the_catalog_example_finishes_every_task() -> None:
    s = load_simulation(EXAMPLES / "catalog-10k.yaml")
    assert s.workload is not None
    small = replace(s, workload=replace(s.workload, count=2000, layers=10))
    r = simulate(small)
    assert r.tasks == 2000
    assert sum(r.states.values()) == 2000
    assert r.instances == 44
    assert 0.0 < r.utilisation <= 1.0
    assert r.decisions["route_task"] == r.dispatches
    assert TaskState.SUCCEEDED.value in r.states
