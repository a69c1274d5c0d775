"""The agent pool on virtual time: the pure scaling policy as literal tables, then the pool's
behaviour through the ``Scheduler`` (spawn, idle termination, cooldown, limits, restarts, the
circuit breaker, rate limits, concurrency and resource limits, backpressure, aging).

Nothing here sleeps: every call carries ``now``, and "idle for 60 s" costs no time.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    CapacityError,
    FunctionRunner,
    Outcome,
    RetryPolicy,
    RouteTask,
    ScaleResources,
    Scheduler,
    SchedulerConfig,
    SpawnAgent,
    TaskState,
    TerminateAgent,
)
from metaagent.core.decisions import FailTask, QuarantineAgent, RetryTask
from metaagent.core.health import HealthPolicy
from metaagent.core.instances import AgentState
from metaagent.core.scaling import (
    InstanceView,
    PoolPolicy,
    ScaleAction,
    ScaleView,
    Smoothed,
    SpecView,
    next_change,
    plan,
)
from metaagent.core.scaling_grow import (
    Budget,
    best_spec,
    coming_slots,
    growth_due,
    may_grow,
    sustained_at,
    wanted_slots,
)
from metaagent.core.scaling_shrink import (
    idle_instances,
    shrink_due,
    surplus,
    target_due,
    timed_out,
)
from metaagent.testing import decisions_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from metaagent.core.decisions import Output


def _noop(ctx: object) -> None:
    return None


RUNNER = FunctionRunner(_noop, name="noop")
NO_JITTER = RetryPolicy(base_s=1.0, max_s=30.0, jitter=0.0)


def spec(
    name: str,
    caps: Mapping[str, float],
    *,
    lo: int = 1,
    hi: int = 1,
    slots: int = 1,
    rate: float | None = None,
) -> AgentSpec:
    return AgentSpec(
        name, dict(caps), RUNNER, concurrency=slots, min_instances=lo, max_instances=hi,
        rate_per_min=rate,
    )  # fmt: skip


# --- the pure policy: literal tables ------------------------------------------------------------

P = PoolPolicy(max_agents=10, spawn_threshold=5, idle_timeout_s=60.0, cooldown_s=5.0)


def busy(n: int, *, running: int = 1, starting: bool = False) -> list[InstanceView]:
    return [InstanceView(f"i{k}", running, 0.0, starting) for k in range(n)]


def idle(*since: float) -> list[InstanceView]:
    return [InstanceView(f"i{k}", 0, t) for k, t in enumerate(since)]


def view(
    name: str = "w",
    insts: Sequence[InstanceView] = (),
    *,
    caps: Mapping[str, float] | None = None,
    slots: int = 1,
    lo: int = 0,
    hi: int = 10,
    last: float = -math.inf,
    shrunk: float = -math.inf,
    hold: float = -math.inf,
    busy: Smoothed | None = None,
) -> SpecView:
    return SpecView(name, caps or {"x": 0.9}, slots, lo, hi, list(insts), last, shrunk, hold, busy)


def brief(actions: Sequence[ScaleAction]) -> list[tuple[str, int, tuple[str, ...]]]:
    return [(a.spec, a.delta, a.terminate) for a in actions]


PLAN_TABLE = [
    # (why, specs, depth, keyword arguments, now, expected actions)
    ("at the threshold: no growth", [view(insts=busy(1))], {"x": 5}, {}, 100.0, []),
    ("one over the threshold: one slot", [view(insts=busy(1))], {"x": 6}, {}, 100.0,
     [("w", 1, ())]),
    ("growth brings the queue down to the threshold", [view(insts=busy(1))], {"x": 9}, {},
     100.0, [("w", 4, ())]),
    ("instances of 2 slots: half as many", [view(insts=busy(1), slots=2)], {"x": 12}, {},
     100.0, [("w", 4, ())]),
    ("slots still starting count", [view(insts=[*busy(1), *busy(2, running=0, starting=True)])],
     {"x": 9}, {}, 100.0, [("w", 2, ())]),
    ("free slots count: the queue fills them first", [view(insts=busy(1))], {"x": 9},
     {"free": {"x": 3}}, 100.0, [("w", 1, ())]),
    ("max_instances caps growth", [view(insts=busy(2), hi=3)], {"x": 30}, {}, 100.0,
     [("w", 1, ())]),
    ("max_agents counts every instance, fixed specs too", [view(insts=busy(1))], {"x": 30},
     {"other_instances": 7}, 100.0, [("w", 2, ())]),
    ("at max_agents: nothing", [view(insts=busy(1))], {"x": 30}, {"other_instances": 9}, 100.0,
     []),
    ("at most max_spawn_per_tick a round", [view(insts=busy(1), hi=50)], {"x": 100}, {}, 100.0,
     [("w", 8, ())]),
    ("growing again right after growing: instances on their way count instead",
     [view(insts=busy(1), last=99.0)], {"x": 30}, {}, 100.0, [("w", 8, ())]),
    ("no growing within the cooldown of a shrink",
     [view(insts=busy(1), last=96.0, shrunk=96.0)], {"x": 30}, {}, 100.0, []),
    ("no growing within the back-off after a lost instance",
     [view(insts=busy(1), hold=100.5)], {"x": 30}, {}, 100.0, []),
    ("the shrink's cooldown over exactly: growth",
     [view(insts=busy(1), last=95.0, shrunk=95.0)], {"x": 6}, {}, 100.0, [("w", 1, ())]),
    ("the most proficient spec grows",
     [view("weak", busy(1), caps={"x": 0.5}), view("strong", busy(1), caps={"x": 0.9})],
     {"x": 6}, {}, 100.0, [("strong", 1, ())]),
    ("the best spec at its maximum: the next best grows",
     [view("weak", busy(1), caps={"x": 0.5}), view("strong", busy(1), caps={"x": 0.9}, hi=1)],
     {"x": 6}, {}, 100.0, [("weak", 1, ())]),
    ("global concurrency room caps growth", [view(insts=busy(1))], {"x": 30},
     {"room_total": 3}, 100.0, [("w", 3, ())]),
    ("no concurrency room: nothing", [view(insts=busy(1))], {"x": 30}, {"room_total": 0},
     100.0, []),
    ("a capability limit caps growth", [view(insts=busy(1))], {"x": 30}, {"room": {"x": 2}},
     100.0, [("w", 2, ())]),
    ("the global room is shared between capabilities",
     [view("a", busy(1), caps={"x": 0.9}), view("b", busy(1), caps={"y": 0.9})],
     {"x": 30, "y": 20}, {"room_total": 5}, 100.0, [("a", 5, ())]),
    ("deepest queue first",
     [view("a", busy(1), caps={"x": 0.9}), view("b", busy(1), caps={"y": 0.9})],
     {"x": 7, "y": 9}, {}, 100.0, [("b", 4, ()), ("a", 2, ())]),
    ("idle exactly the timeout: terminated", [view(insts=idle(40.0))], {}, {}, 100.0,
     [("w", -1, ("i0",))]),
    ("idle a moment less: kept", [view(insts=idle(40.001))], {}, {}, 100.0, []),
    ("min_instances kept, oldest idle go first", [view(insts=idle(10.0, 5.0, 20.0), lo=1)], {},
     {}, 100.0, [("w", -2, ("i1", "i0"))]),
    ("busy instances are kept", [view(insts=[*idle(0.0), *busy(1)])], {}, {}, 100.0,
     [("w", -1, ("i0",))]),
    ("starting instances are kept",
     [view(insts=[InstanceView("s", 0, 0.0, True)])], {}, {}, 100.0, []),
    ("no shrinking while its queue is not empty (hysteresis)", [view(insts=idle(0.0, 0.0))],
     {"x": 1}, {}, 100.0, []),
    ("another capability's queue does not hold it", [view(insts=idle(0.0))], {"y": 9}, {},
     100.0, [("w", -1, ("i0",))]),
    ("no shrinking within the cooldown of any action",
     [view(insts=idle(0.0), last=99.0)], {}, {}, 100.0, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("specs", "depth", "kw", "now", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in PLAN_TABLE],
)
def test_plan(
    specs: list[SpecView],
    depth: dict[str, int],
    kw: dict[str, object],
    now: float,
    expected: list[tuple[str, int, tuple[str, ...]]],
) -> None:
    assert brief(plan(ScaleView(specs, depth, **kw), P, now)) == expected  # type: ignore[arg-type]


def test_plan_reasons_name_the_depth_the_threshold_and_the_choice() -> None:
    (up,) = plan(ScaleView([view(insts=busy(1))], {"x": 7}), P, 0.0)
    assert up.reason == (
        "queue depth of 'x' is 7 > spawn threshold 5; w serves it best (proficiency 0.90)"
    )
    (down,) = plan(ScaleView([view(insts=idle(0.0), lo=0)]), P, 60.0)
    assert down.reason == "idle for at least 60s with no queued work (keeping min_instances=0)"


NEXT_TABLE = [
    ("nothing to wait for", [view(insts=busy(1))], {}, None),
    ("deep queue: when the cooldown of a shrink ends",
     [view(insts=busy(1), last=10.0, shrunk=10.0)], {"x": 9}, 15.0),
    ("deep queue after a loss: when its back-off ends",
     [view(insts=busy(1), hold=12.5)], {"x": 9}, 12.5),
    ("deep queue, never shrunk: growth waits on events, not time",
     [view(insts=busy(1), last=10.0)], {"x": 9}, None),
    ("deep queue at max_instances: only an event can help", [view(insts=busy(1), hi=1)],
     {"x": 9}, None),
    ("idle instance: when its timeout is reached", [view(insts=idle(30.0, 20.0))], {}, 80.0),
    ("idle, but the cooldown ends later", [view(insts=idle(0.0), last=58.0)], {}, 63.0),
    ("idle at min_instances: nothing", [view(insts=idle(0.0), lo=1)], {}, None),
    ("idle while its queue is not empty: nothing", [view(insts=idle(0.0))], {"x": 2}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("specs", "depth", "expected"), [pytest.param(*row[1:], id=row[0]) for row in NEXT_TABLE]
)
def test_next_change(specs: list[SpecView], depth: dict[str, int], expected: float | None) -> None:
    assert next_change(ScaleView(specs, depth), P) == expected


def test_policy_problems() -> None:
    assert PoolPolicy().problems() == []
    bad = PoolPolicy(
        max_agents=0, spawn_threshold=-1, idle_timeout_s=0, cooldown_s=-1, max_spawn_per_tick=0
    )
    assert len(bad.problems()) == 5
    with pytest.raises(ValueError, match="max_agents must be at least 1"):
        Scheduler(SchedulerConfig(pool=PoolPolicy(max_agents=0)))


def test_new_knobs_are_validated_by_name() -> None:
    bad = PoolPolicy(target_utilisation=1.5, scale_up_window_s=-1, utilisation_window_s=-0.5)
    assert bad.problems() == [
        "scale_up_window_s must be at least 0, got -1",
        "target_utilisation must be within 0..1, got 1.5",
        "utilisation_window_s must be at least 0, got -0.5",
    ]
    with pytest.raises(ValueError, match=r"target_utilisation must be within 0\.\.1"):
        Scheduler(SchedulerConfig(pool=PoolPolicy(target_utilisation=-0.1)))


# --- sustained growth and the target utilisation: literal tables ------------------------------

LN = math.log
SMOOTHED_TABLE = [
    # (why, signal, window, method, argument, expected)
    ("converged: the level", Smoothed(4.0), 5.0, "average", 100.0, 4.0),
    ("one time constant on", Smoothed(10.0, 0.0, 0.0), 5.0, "average", 5.0,
     10.0 * (1 - math.exp(-1))),
    ("window 0: the level at once", Smoothed(10.0, 0.0, 0.0), 0.0, "average", 0.0, 10.0),
    ("rising to a bound", Smoothed(8.0, 0.0, 0.0), 5.0, "rises_to", 5.0, 5.0 * LN(8 / 3)),
    ("already above: since the step", Smoothed(8.0, 6.0, 3.0), 5.0, "rises_to", 5.0, 3.0),
    ("a level below the bound: never", Smoothed(4.0, 9.0, 3.0), 5.0, "rises_to", 5.0, math.inf),
    ("a level at the bound: only in the limit", Smoothed(5.0, 0.0, 0.0), 5.0, "rises_to", 5.0,
     math.inf),
    ("window 0, level above: since the step", Smoothed(8.0, 0.0, 2.0), 0.0, "rises_to", 5.0,
     2.0),
    ("falling to a bound", Smoothed(1.0, 3.0, 10.0), 10.0, "falls_to", 1.8,
     10.0 + 10.0 * LN(2 / 0.8)),
    ("already below", Smoothed(1.0, 1.5, 10.0), 10.0, "falls_to", 1.8, 10.0),
    ("a level above the bound: never", Smoothed(2.0, 0.0, 0.0), 10.0, "falls_to", 1.8, math.inf),
]  # fmt: skip


@pytest.mark.parametrize(
    ("signal", "window", "method", "arg", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in SMOOTHED_TABLE],
)
def test_smoothed(
    signal: Smoothed, window: float, method: str, arg: float, expected: float
) -> None:
    got = getattr(signal, method)(arg, window)
    assert got == pytest.approx(expected, rel=1e-12) if math.isfinite(expected) else got == expected


def test_smoothed_steps_only_when_the_level_changes() -> None:
    s = Smoothed(8.0, 0.0, 0.0)
    assert s.step(8.0, 3.0, 5.0) is s  # same level: the same times stay the answer
    t = s.step(2.0, 5.0, 5.0)
    assert t == Smoothed(2.0, pytest.approx(8.0 * (1 - math.exp(-1))), 5.0)


def mixed(running: int, *idle_since: float, slots_used: int = 1) -> list[InstanceView]:
    """``running`` instances each running ``slots_used`` attempts, then idle ones."""
    return [InstanceView(f"b{k}", slots_used, 0.0) for k in range(running)] + [
        InstanceView(f"i{k}", 0, t) for k, t in enumerate(idle_since)
    ]


TEN = mixed(5, 91.0, 92.0, 93.0, 94.0, 95.0)  # 5 of 10 instances busy
STILL_HIGH = Smoothed(5.0, 10.0, 99.0)  # 5 busy now, 10 until a second ago
FALLEN = STILL_HIGH.falls_to(0.9 * 9, 20.0)  # when 9 instances would be 90% busy
NO_TARGET = PoolPolicy(max_agents=10, cooldown_s=5.0, target_utilisation=0.0)
WINDOW_0 = PoolPolicy(max_agents=10, cooldown_s=5.0, scale_up_window_s=0.0)
SPIKE = {"x": Smoothed(9.0, 0.0, 100.0)}  # deep since 100.0, shallow before
SUSTAINED = 100.0 + 5.0 * LN(9 / 4)  # when its average passes 5

RULES_TABLE = [
    # (why, policy, specs, depth, sustained, now, expected actions)
    ("a spike: deep now, not on average", P, [view(insts=busy(1))], {"x": 9}, SPIKE, 100.0, []),
    ("a moment before the average passes the threshold", P, [view(insts=busy(1))], {"x": 9},
     SPIKE, SUSTAINED - 1e-9, []),
    ("sustained: the average passed it, growth to the threshold as before", P,
     [view(insts=busy(1))], {"x": 9}, SPIKE, SUSTAINED, [("w", 4, ())]),
    ("scale_up_window_s 0: the depth now is enough", WINDOW_0, [view(insts=busy(1))], {"x": 9},
     SPIKE, 100.0, [("w", 4, ())]),
    ("deep on average but not now: no growth", P, [view(insts=busy(1))], {"x": 5},
     {"x": Smoothed(5.0, 9.0, 99.0)}, 100.0, []),
    ("not served at all: one from zero at once", P, [view()], {"x": 1},
     {"x": Smoothed(1.0, 0.0, 100.0)}, 100.0, [("w", 1, ())]),
    ("target: 5 busy slots keep 6 of 10 instances at least 90% busy", P,
     [view(insts=TEN, busy=Smoothed(5.0))], {}, None, 100.0,
     [("w", -4, ("i0", "i1", "i2", "i3"))]),
    ("target 0: only the idle timeout retires", NO_TARGET,
     [view(insts=TEN, busy=Smoothed(5.0))], {}, None, 100.0, []),
    ("a queued task holds the target rule (hysteresis)", P,
     [view(insts=TEN, busy=Smoothed(5.0))], {"x": 1}, None, 100.0, []),
    ("another capability's queue does not", P, [view(insts=TEN, busy=Smoothed(5.0))], {"y": 9},
     None, 100.0, [("w", -4, ("i0", "i1", "i2", "i3"))]),
    ("within the cooldown of any action: kept", P,
     [view(insts=TEN, busy=Smoothed(5.0), last=96.0)], {}, None, 100.0, []),
    ("never below min_instances", P, [view(insts=TEN, busy=Smoothed(5.0), lo=8)], {}, None,
     100.0, [("w", -2, ("i0", "i1"))]),
    ("busy instances are never stopped: fewer idle than spare", P,
     [view(insts=mixed(4, 95.0), slots=2, busy=Smoothed(4.0))], {}, None, 100.0,
     [("w", -1, ("i0",))]),
    ("starting instances are not retired", P,
     [view(insts=[*busy(1), *busy(2, running=0, starting=True)], busy=Smoothed(1.0))], {}, None,
     100.0, []),
    ("the average still high: kept", P, [view(insts=TEN, busy=STILL_HIGH)], {}, None, 100.0, []),
    ("the average fallen to what 9 keep busy: one goes", P, [view(insts=TEN, busy=STILL_HIGH)],
     {}, None, FALLEN, [("w", -1, ("i0",))]),
    ("nothing running: load gone, the idle timeout decides", P,
     [view(insts=idle(91.0, 92.0), busy=Smoothed(0.0, 3.0, 90.0))], {}, None, 100.0, []),
    ("the idle timeout still applies with the target rule", P,
     [view(insts=mixed(1, 30.0, 95.0), busy=Smoothed(1.0, 2.0, 99.0))], {}, None, 100.0,
     [("w", -1, ("i0",))]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "specs", "depth", "sustained", "now", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in RULES_TABLE],
)
def test_sustained_growth_and_target_utilisation(
    policy: PoolPolicy,
    specs: list[SpecView],
    depth: dict[str, int],
    sustained: dict[str, Smoothed] | None,
    now: float,
    expected: list[tuple[str, int, tuple[str, ...]]],
) -> None:
    snap = ScaleView(specs, depth, sustained=sustained or {})
    assert brief(plan(snap, policy, now)) == expected


def test_reasons_of_the_new_rules() -> None:
    (up,) = plan(ScaleView([view(insts=busy(1))], {"x": 9}, sustained=SPIKE), P, SUSTAINED)
    assert up.reason.startswith("queue depth of 'x' is 9 > spawn threshold 5 (averaged over 5s)")
    (down,) = plan(ScaleView([view(insts=TEN, busy=Smoothed(5.0))]), P, 100.0)
    assert down.reason == (
        "5.0 busy slots (averaged over 20s) keep 6 instances at least 90% busy "
        "(target utilisation; keeping min_instances=0)"
    )


RULES_NEXT_TABLE = [
    # (why, specs, depth, sustained, expected)
    ("a deep queue: when its average passes the threshold", [view(insts=busy(1))], {"x": 9},
     SPIKE, SUSTAINED),
    ("... or when a shrink's cooldown ends, if later", [view(insts=busy(1), shrunk=103.0)],
     {"x": 9}, SPIKE, 108.0),
    ("a deep queue at max_instances: nothing", [view(insts=busy(1), hi=1)], {"x": 9}, SPIKE,
     None),
    ("a spike gone: nothing", [view(insts=busy(1))], {"x": 4}, {"x": Smoothed(4.0, 2.0, 100.0)},
     None),
    ("target: when the busy slots' average has fallen enough", [view(insts=TEN, busy=STILL_HIGH)],
     {}, None, FALLEN),
    ("target: or when the cooldown ends, if later",
     [view(insts=TEN, busy=STILL_HIGH, last=106.0)], {}, None, 111.0),
    ("target: a level too high never makes one spare: the idle timeout",
     [view(insts=mixed(9, 95.0), busy=Smoothed(9.0, 12.0, 99.0))], {}, None, 155.0),
    ("target: nothing running, only the idle timeout",
     [view(insts=idle(91.0, 92.0), busy=Smoothed(0.0, 3.0, 90.0))], {}, None, 151.0),
    ("target: no idle instance, nothing", [view(insts=busy(3), busy=Smoothed(1.0, 3.0, 99.0))],
     {}, None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("specs", "depth", "sustained", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in RULES_NEXT_TABLE],
)
def test_next_change_of_the_new_rules(
    specs: list[SpecView],
    depth: dict[str, int],
    sustained: dict[str, Smoothed] | None,
    expected: float | None,
) -> None:
    at = ScaleView(specs, depth, sustained=sustained or {})
    got = next_change(at, P)
    assert got == (pytest.approx(expected, rel=1e-12) if expected is not None else None)
    if got is not None:
        # ``plan`` acts at exactly that time and not a moment before.
        assert plan(at, P, got)
        assert not plan(at, P, got - 1e-6)


# --- the rules one by one: literal tables ------------------------------------------------------

SUSTAINED_AT_TABLE = [
    # (why, policy, depth, sustained, expected: from when the queue counts as deep)
    ("at the threshold: never", P, {"x": 5}, SPIKE, math.inf),
    ("deep, no average kept: since ever", P, {"x": 9}, {}, -math.inf),
    ("deep, scale_up_window_s 0: since ever", WINDOW_0, {"x": 9}, SPIKE, -math.inf),
    ("deep, the average rising: when it passes the threshold", P, {"x": 9}, SPIKE, SUSTAINED),
    ("deep, the average above already: since the step", P, {"x": 9},
     {"x": Smoothed(9.0, 6.0, 3.0)}, 3.0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "depth", "sustained", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in SUSTAINED_AT_TABLE],
)
def test_sustained_at(
    policy: PoolPolicy, depth: dict[str, int], sustained: dict[str, Smoothed], expected: float
) -> None:
    got = sustained_at("x", ScaleView([], depth, sustained=sustained), policy)
    assert got == (pytest.approx(expected, rel=1e-12) if math.isfinite(expected) else expected)


WANTED_TABLE = [
    # (why, queue n, slots coming, attempts allowed, threshold, unserved, expected new slots)
    ("down to the threshold", 9, 0, math.inf, 5, False, 4),
    ("slots on their way count first", 9, 3, math.inf, 5, False, 1),
    ("at the threshold: none", 5, 0, math.inf, 5, False, 0),
    ("the concurrency room bounds it", 30, 0, 2, 5, False, 2),
    ("... the room less what is coming", 30, 1, 2, 5, False, 1),
    ("nobody serves it: one from zero", 1, 0, math.inf, 5, True, 1),
    ("nobody serves it, one slot coming: none", 1, 1, math.inf, 5, True, -5),
    ("nobody serves it, no room: none", 1, 0, 0, 5, True, -4),
]  # fmt: skip


@pytest.mark.parametrize(
    ("n", "coming", "allowed", "threshold", "unserved", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in WANTED_TABLE],
)
def test_wanted_slots(
    n: int, coming: int, allowed: float, threshold: int, unserved: bool, expected: float
) -> None:
    assert wanted_slots(n, coming, allowed, threshold, unserved) == expected


COMING_TABLE = [
    # (why, serving specs, instances added this round per spec, free slots, expected)
    ("nothing on its way", [view(insts=busy(1))], {}, 0, 0),
    ("free slots", [view(insts=busy(1))], {}, 3, 3),
    ("starting instances, by their slots",
     [view(insts=[*busy(1), *busy(2, running=0, starting=True)], slots=2)], {}, 0, 4),
    ("instances decided this round for another queue", [view(insts=busy(1), slots=2)],
     {"w": 3}, 1, 7),
    ("another spec's additions do not serve it", [view(insts=busy(1))], {"v": 3}, 0, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("serving", "grown", "free", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in COMING_TABLE],
)
def test_coming_slots(
    serving: list[SpecView], grown: dict[str, int], free: int, expected: int
) -> None:
    assert coming_slots(serving, Budget(10, 8, math.inf, dict(grown)), free) == expected


MAY_GROW_TABLE = [
    # (why, spec, instances added this round, now, expected)
    ("below max_instances", view(insts=busy(1), hi=3), 0, 100.0, True),
    ("at max_instances with this round's", view(insts=busy(1), hi=3), 2, 100.0, False),
    ("within the cooldown of a shrink", view(insts=busy(1), shrunk=96.0), 0, 100.0, False),
    ("the shrink's cooldown over exactly", view(insts=busy(1), shrunk=95.0), 0, 100.0, True),
    ("a recent growth does not hold growth", view(insts=busy(1), last=99.0), 0, 100.0, True),
    ("within the back-off after a loss", view(insts=busy(1), hold=100.5), 0, 100.0, False),
    ("the back-off over exactly", view(insts=busy(1), hold=100.0), 0, 100.0, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("s", "added", "now", "expected"), [pytest.param(*row[1:], id=row[0]) for row in MAY_GROW_TABLE]
)
def test_may_grow(s: SpecView, added: int, now: float, expected: bool) -> None:
    assert may_grow(s, added, P, now) is expected


BEST_TABLE = [
    # (why, candidates, expected spec)
    ("none: none", [], None),
    ("the most proficient", [view("a", caps={"x": 0.5}), view("b", caps={"x": 0.9})], "b"),
    ("equally proficient: the smaller pool", [view("a", busy(2)), view("b", busy(3))], "a"),
    ("equal pools: the later name", [view("a", busy(1)), view("b", busy(1))], "b"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("candidates", "expected"), [pytest.param(*row[1:], id=row[0]) for row in BEST_TABLE]
)
def test_best_spec(candidates: list[SpecView], expected: str | None) -> None:
    best = best_spec(candidates, "x")
    assert (best.name if best is not None else None) == expected


def test_idle_instances_and_the_idle_timeout() -> None:
    s = view(insts=[*mixed(1, 40.0, 10.0, 40.001), InstanceView("s", 0, 0.0, True)])
    idle = idle_instances(s)
    assert [i.id for i in idle] == ["i1", "i0", "i2"]  # busy and starting ones left out
    assert [timed_out(idle, P, now) for now in (69.999, 70.0, 100.0, 100.001)] == [0, 1, 2, 3]


SURPLUS_TABLE = [
    # (why, policy, spec, now, expected spare instances)
    ("5 busy slots keep 6 of 10 busy enough", P, view(insts=TEN, busy=Smoothed(5.0)), 100.0, 4),
    ("never below min_instances", P, view(insts=TEN, busy=Smoothed(5.0), lo=8), 100.0, 2),
    ("2 slots each: 5 busy slots keep 3", P, view(insts=TEN, slots=2, busy=Smoothed(5.0)),
     100.0, 7),
    ("target 0: none", NO_TARGET, view(insts=TEN, busy=Smoothed(5.0)), 100.0, 0),
    ("busy slots not known: none", P, view(insts=TEN), 100.0, 0),
    ("nothing running: none", P, view(insts=TEN, busy=Smoothed(0.0, 3.0, 90.0)), 100.0, 0),
    ("the average still high: none", P, view(insts=TEN, busy=STILL_HIGH), 100.0, 0),
    ("the average fallen to what 9 keep busy: one", P, view(insts=TEN, busy=STILL_HIGH),
     FALLEN, 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "s", "now", "expected"), [pytest.param(*row[1:], id=row[0]) for row in SURPLUS_TABLE]
)
def test_surplus(policy: PoolPolicy, s: SpecView, now: float, expected: int) -> None:
    assert surplus(s, policy, now) == expected


DUE_TABLE: list[tuple[str, *tuple[object, ...]]] = [
    # (why, rule, spec, depth, served, sustained, expected: when the rule next comes due by
    # time alone)
    ("growth: no deep queue, the shrink rules decide", growth_due, view(insts=busy(1)), {},
     None, {}, None),
    ("growth: when the queue's average passes the threshold", growth_due, view(insts=busy(1)),
     {"x": 9}, None, SPIKE, SUSTAINED),
    ("growth: or when a shrink's cooldown ends, if later", growth_due,
     view(insts=busy(1), shrunk=103.0), {"x": 9}, None, SPIKE, 108.0),
    ("growth: at max_instances, only an event can help", growth_due, view(insts=busy(1), hi=1),
     {"x": 9}, None, SPIKE, math.inf),
    ("growth: due already, it waits on events", growth_due, view(insts=busy(1)), {"x": 9}, None,
     {}, math.inf),
    ("growth: a queue nobody serves, when the back-off ends", growth_due,
     view(insts=busy(1), hold=12.5), {"x": 1}, set(), {}, 12.5),
    ("shrink: the longest idle reaches the timeout", shrink_due, view(insts=idle(30.0, 20.0)),
     {}, None, {}, 80.0),
    ("shrink: the cooldown ends later", shrink_due, view(insts=idle(0.0), last=58.0), {}, None,
     {}, 63.0),
    ("shrink: the busy slots' average falls enough", shrink_due,
     view(insts=TEN, busy=STILL_HIGH), {}, None, {}, FALLEN),
    ("shrink: at min_instances, never", shrink_due, view(insts=idle(0.0), lo=1), {}, None, {},
     math.inf),
    ("shrink: a queue waits, never", shrink_due, view(insts=idle(0.0)), {"x": 1}, None, {},
     math.inf),
    ("shrink: none idle, never", shrink_due, view(insts=busy(3), busy=Smoothed(1.0, 3.0, 99.0)),
     {}, None, {}, math.inf),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "s", "depth", "served", "sustained", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in DUE_TABLE],
)
def test_rule_due(
    rule: Callable[[SpecView, ScaleView, PoolPolicy], float | None],
    s: SpecView,
    depth: dict[str, int],
    served: set[str] | None,
    sustained: dict[str, Smoothed],
    expected: float | None,
) -> None:
    got = rule(s, ScaleView([s], depth, served=served, sustained=sustained), P)
    if expected is None or not math.isfinite(expected):
        assert got == expected
    else:
        assert got == pytest.approx(expected, rel=1e-12)


def test_target_due_is_when_one_instance_becomes_spare() -> None:
    assert target_due(view(insts=TEN, busy=STILL_HIGH), P) == FALLEN
    assert target_due(view(insts=TEN), P) == math.inf  # busy slots not known
    assert target_due(view(insts=TEN, busy=STILL_HIGH), NO_TARGET) == math.inf


# --- the pool through the scheduler, on virtual time ---------------------------------------------


def classic(**kw: float) -> PoolPolicy:
    """The requirements' rules alone: growth on the depth now, shrinking by the idle timeout.
    The tests of the sustained-growth and target-utilisation rules use the defaults."""
    return PoolPolicy(scale_up_window_s=0.0, target_utilisation=0.0, **kw)  # type: ignore[arg-type]


class Pool:
    """A scheduler whose spawned instances start at once; it keeps every output it answered."""

    def __init__(self, specs: Sequence[AgentSpec], **config: object) -> None:
        config.setdefault("retry", NO_JITTER)
        config.setdefault("pool", classic())
        self.s = Scheduler(SchedulerConfig(**config))  # type: ignore[arg-type]
        self.outs: list[Output] = []
        self.start = True  # spawned instances report ready at once
        for sp in specs:
            self.take(self.s.add_spec(sp, 0.0), 0.0)

    def take(self, outs: Sequence[Output], now: float) -> list[Output]:
        self.outs.extend(outs)
        for o in outs:
            if isinstance(o, SpawnAgent) and self.start:
                self.s.agent_ready(o.instance, now)
            if isinstance(o, TerminateAgent) and not o.lost:
                self.s.agent_stopped(o.instance, now)
        return list(outs)

    def submit(self, run: str, tasks: Sequence[AgentTask], now: float) -> list[Output]:
        return self.take(self.s.submit(run, tasks, now), now)

    def tick(self, now: float) -> list[Output]:
        return self.take(self.s.tick(now), now)

    def finish(self, route: RouteTask, now: float, outcome: Outcome = Outcome.SUCCEEDED) -> None:
        self.take(
            self.s.finish(route.run_id or "", route.task_id or "", route.attempt, outcome, now),
            now,
        )

    def lose(self, instance: str, now: float) -> list[Output]:
        return self.take(self.s.agent_lost(instance, now, "killed"), now)

    def running(self) -> list[RouteTask]:
        """The route decisions of attempts still running."""
        out = []
        for r in decisions_of(self.outs, RouteTask):
            rec = self.s.task(r.run_id, r.task_id)
            if rec.state is TaskState.RUNNING and rec.attempt == r.attempt:
                out.append(r)
        return out

    def live(self, spec_name: str | None = None) -> list[str]:
        return sorted(
            i.id
            for i in self.s.agents.values()
            if spec_name in (None, i.spec.name) and i.state is not AgentState.DRAINING
        )


def tasks(n: int, cap: str = "x", prefix: str = "t", **kw: object) -> list[AgentTask]:
    return [AgentTask(f"{prefix}{i}", cap, **kw) for i in range(n)]  # type: ignore[arg-type]


def test_min_instances_are_spawned_with_their_reason() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=2, hi=4)])
    spawns = decisions_of(p.outs, SpawnAgent)
    assert [(d.spec, d.instance, d.reason) for d in spawns] == [
        ("w", "w#1", "min_instances"),
        ("w", "w#2", "min_instances"),
    ]
    assert p.live() == ["w#1", "w#2"]


def test_spawn_only_when_the_queue_is_deeper_than_the_threshold() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=10)])
    p.submit("a", tasks(6), 0.0)
    p.tick(0.0)  # one runs, five wait: depth 5 is not > 5
    assert p.s.queue_depth() == {"x": 5}
    assert decisions_of(p.outs, ScaleResources) == []
    p.submit("b", tasks(1, prefix="u"), 1.0)
    outs = p.tick(1.0)
    (scale,) = decisions_of(outs, ScaleResources)
    assert (scale.spec, scale.from_n, scale.to_n) == ("w", 1, 2)
    assert "queue depth of 'x' is 6 > spawn threshold 5" in scale.reason
    (spawn,) = decisions_of(outs, SpawnAgent)
    assert spawn.reason == scale.reason
    assert p.live() == ["w#1", "w#2"]
    # Once ready, the new instance takes a task.
    p.tick(1.0)
    assert p.s.agents["w#2"].running == 1


def test_spawned_instances_take_work_only_once_ready() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=10)])
    p.start = False
    p.submit("a", tasks(8), 0.0)
    p.tick(0.0)
    assert p.live() == ["w#1", "w#2", "w#3"]
    assert p.s.agents["w#2"].state is AgentState.STARTING
    assert p.s.running == 1
    p.s.agent_ready("w#2", 2.0)
    assert [r.instance for r in decisions_of(p.tick(2.0), RouteTask)] == ["w#2"]


def test_idle_instances_are_terminated_exactly_at_the_idle_timeout() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=10)])
    p.submit("a", tasks(8), 0.0)
    p.tick(0.0)
    assert p.live() == ["w#1", "w#2", "w#3"]
    for r in p.running():
        p.finish(r, 10.0)
    p.tick(10.0)
    while p.running():
        for r in p.running():
            p.finish(r, 10.0)
        p.tick(10.0)
    assert p.s.queue_depth() == {}
    assert p.s.next_wakeup() == 70.0  # 60 s of virtual idleness: no time passes
    assert decisions_of(p.tick(69.999), TerminateAgent) == []
    outs = p.tick(70.0)
    terms = decisions_of(outs, TerminateAgent)
    assert sorted(t.instance for t in terms) == ["w#1", "w#2"]  # the oldest idle go
    assert all("idle for at least 60s" in t.reason for t in terms)
    (scale,) = decisions_of(outs, ScaleResources)
    assert (scale.from_n, scale.to_n) == (3, 1)
    assert p.live() == ["w#3"]  # min_instances kept
    assert p.s.next_wakeup() is None
    assert decisions_of(p.tick(1000.0), TerminateAgent) == []


def test_idle_timeout_is_configurable() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=0, hi=3)], pool=classic(idle_timeout_s=5.0))
    p.submit("a", tasks(6), 0.0)
    p.tick(0.0)
    for r in p.running():
        p.finish(r, 1.0)
    while p.running() or p.s.queue_depth():
        p.tick(1.0)
        for r in p.running():
            p.finish(r, 1.0)
    assert p.s.next_wakeup() == 6.0
    spawned = {d.instance for d in decisions_of(p.outs, SpawnAgent)}
    assert {d.instance for d in decisions_of(p.tick(6.0), TerminateAgent)} == spawned
    assert p.live() == []  # min_instances is 0


def test_growth_follows_a_deepening_queue_counting_what_is_on_its_way() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=40)], pool=classic(cooldown_s=5.0))
    p.start = False  # spawned instances stay starting
    p.submit("a", tasks(8), 0.0)
    p.tick(0.0)  # one runs, 7 wait: 2 more
    assert len(p.live()) == 3
    # nothing new: what is starting is enough
    assert decisions_of(p.tick(0.5), ScaleResources) == []
    p.submit("b", tasks(4, prefix="u"), 1.0)
    # deeper: more, no cooldown between growths
    (scale,) = decisions_of(p.tick(1.0), ScaleResources)
    assert (scale.from_n, scale.to_n) == (3, 7)
    assert "(2 slots free or starting)" in scale.reason


def test_cooldown_keeps_the_pool_from_flapping() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=20)],
             pool=classic(cooldown_s=5.0, idle_timeout_s=1.0))  # fmt: skip
    p.submit("a", tasks(8), 0.0)
    p.tick(0.0)
    assert len(p.live()) == 3
    # Idle past the timeout, but within the cooldown of the growth: kept until it ends.
    for r in p.running():
        p.finish(r, 0.5)
    while p.s.queued:
        p.tick(0.5)
        for r in p.running():
            p.finish(r, 0.5)
    assert decisions_of(p.tick(4.0), TerminateAgent) == []
    assert p.s.next_wakeup() == 5.0
    (shrink,) = decisions_of(p.tick(5.0), ScaleResources)
    assert (shrink.from_n, shrink.to_n) == (3, 1)
    # A burst right after the shrink: growth waits for the cooldown to end.
    p.submit("b", tasks(10, prefix="u"), 6.0)
    assert decisions_of(p.tick(6.0), ScaleResources) == []
    assert p.s.next_wakeup() == 10.0
    assert decisions_of(p.tick(9.999), ScaleResources) == []
    (grow,) = decisions_of(p.tick(10.0), ScaleResources)
    assert grow.from_n == 1


def test_a_pool_that_cannot_grow_does_not_ask_to_be_woken_in_the_past() -> None:
    # Regression: at max_instances with a deep queue, next_wakeup() kept answering the end of
    # a cooldown long gone, so the runtime ticked in a busy loop.
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=2)], pool=classic(cooldown_s=5.0))
    p.submit("a", tasks(20), 0.0)
    p.tick(0.0)
    assert len(p.live()) == 2
    for t in (1.0, 5.0, 6.0, 30.0):
        p.tick(t)
        wake = p.s.next_wakeup()
        assert wake is None or wake > t


def test_max_instances_and_max_agents_bound_growth() -> None:
    p = Pool(
        [spec("fixed", {"x": 0.5}, lo=3, hi=3), spec("w", {"x": 0.9}, lo=1, hi=4)],
        pool=classic(max_agents=6, cooldown_s=0.0),
    )
    p.submit("a", tasks(100), 0.0)
    for t in range(10):
        p.tick(float(t))
    # The fixed spec's three instances count against max_agents: w may only reach 3.
    assert len(p.live()) == 6
    assert len(p.live("w")) == 3
    p2 = Pool([spec("w", {"x": 0.9}, lo=1, hi=4)], pool=classic(cooldown_s=0.0))
    p2.submit("a", tasks(100), 0.0)
    for t in range(10):
        p2.tick(float(t))
    assert len(p2.live()) == 4


def test_growth_stops_at_what_the_concurrency_limits_let_run() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=20)], max_concurrency=3,
             pool=classic(cooldown_s=0.0))  # fmt: skip
    p.submit("a", tasks(50), 0.0)
    for t in range(5):
        p.tick(float(t))
    assert len(p.live()) == 3
    assert p.s.running == 3
    q = Pool([spec("w", {"x": 0.9}, lo=1, hi=20)], capability_limits={"x": 2},
             pool=classic(cooldown_s=0.0))  # fmt: skip
    q.submit("a", tasks(50), 0.0)
    for t in range(5):
        q.tick(float(t))
    assert len(q.live()) == 2
    assert q.s.running == 2


def test_the_best_spec_for_the_capability_grows() -> None:
    p = Pool(
        [spec("weak", {"x": 0.4}, lo=1, hi=5), spec("strong", {"x": 0.95, "y": 0.2}, lo=1, hi=5)]
    )
    p.submit("a", tasks(12), 0.0)
    p.tick(0.0)
    assert len(p.live("strong")) > 1
    assert p.live("weak") == ["weak#1"]


# --- health: losses, restarts, circuit breaker ---------------------------------------------------


def test_a_lost_instance_is_replaced_below_min_instances_with_a_fresh_id() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=1)])
    p.submit("a", tasks(1), 0.0)
    p.tick(0.0)
    (route,) = p.running()
    assert route.instance == "w"
    outs = p.lose("w", 1.0)
    (term,) = decisions_of(outs, TerminateAgent)
    assert (term.instance, term.lost, term.reason) == ("w", True, "lost: killed")
    (retry,) = decisions_of(outs, RetryTask)
    assert "agent w lost: killed" in retry.reason
    # The late result of the lost attempt is rejected.
    assert p.s.finish("a", "t0", 1, Outcome.SUCCEEDED, 1.5) == []
    assert p.s.stale_results == 1
    assert p.s.waiting_reasons() == {}  # nothing queued yet: the retry is backing off
    wake = p.s.next_wakeup()
    assert wake is not None
    outs = p.tick(wake)
    spawned = decisions_of(p.outs, SpawnAgent)[-1]
    assert spawned.reason == "restart after a lost instance"
    assert spawned.instance != "w"  # never the id of the lost one
    assert p.live() == [spawned.instance]
    while p.s.task("a", "t0").state is not TaskState.RUNNING:
        nxt = p.s.next_wakeup()
        assert nxt is not None
        p.tick(nxt)
    (again,) = p.running()
    assert (again.attempt, again.instance) == (2, spawned.instance)
    first, _ = p.s.task("a", "t0").attempts
    assert (first.outcome, first.agent_instance) == (Outcome.CRASH, "w")


def test_work_of_a_lost_agent_is_rerouted_after_the_first_back_off_step_every_time() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=3, hi=3)], retry=RetryPolicy(base_s=0.25, jitter=0.0))
    p.submit("a", tasks(1, max_attempts=5), 0.0)
    p.tick(0.0)
    now = 0.0
    for _ in range(3):
        (r,) = p.running()
        (retry,) = decisions_of(p.lose(r.instance, now), RetryTask)
        assert retry.delay_s == 0.25  # not 0.25 * 2 ** (attempt - 1): the agent failed
        now += 2.0  # restarts are due by now
        p.tick(now)
        p.tick(now)
    (r,) = p.running()
    assert r.attempt == 4
    p.finish(r, now, Outcome.ERROR)  # the task's own failure backs off as usual
    (retry,) = decisions_of(p.outs, RetryTask)[-1:]
    assert retry.delay_s == 0.25 * 2**3


def test_an_elastic_spec_whose_instances_die_at_start_is_not_respawned_every_round() -> None:
    h = HealthPolicy(restart_backoff_s=0.5, restart_backoff_max_s=30.0, restart_jitter=0.0)
    p = Pool([spec("w", {"x": 0.9}, lo=0, hi=10)], health=h, pool=classic(cooldown_s=0.0))
    p.start = False
    p.submit("a", tasks(20), 0.0)
    now = 0.0
    while now < 60.0:
        for iid in p.live():
            p.lose(iid, now)  # every instance dies as it starts
        p.tick(now)
        now += 0.1
    spawns = [d.at for d in decisions_of(p.outs, SpawnAgent)]
    rounds = sorted(set(spawns))
    # Each round's instances die, and the next round waits a back-off that doubles:
    # 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s... not one round every 0.1 s.
    assert len(rounds) <= 7
    gaps = [b - a for a, b in itertools.pairwise(rounds)]
    assert all(later >= earlier for earlier, later in itertools.pairwise(gaps))
    assert p.s.task("a", "t0").state is TaskState.READY  # the tasks wait, none is lost


def test_no_restart_while_enough_instances_live() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=3)], pool=classic(cooldown_s=0.0))
    p.submit("a", tasks(9), 0.0)
    p.tick(0.0)
    assert len(p.live()) == 3
    p.lose("w#1", 1.0)
    p.tick(100.0)
    assert "restart after a lost instance" not in [
        d.reason for d in decisions_of(p.outs, SpawnAgent)
    ]


def restart_delays(seed: int, losses: int, health: HealthPolicy) -> list[float]:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=1)], health=health, seed=seed)
    delays = []
    now = 0.0
    for _ in range(losses):
        (iid,) = p.live()
        p.lose(iid, now)
        lost_at = now
        wake = p.s.next_wakeup()
        assert wake is not None
        assert decisions_of(p.tick(wake - 1e-6), SpawnAgent) == []
        assert decisions_of(p.tick(wake), SpawnAgent)
        delays.append(wake - lost_at)
        now = wake
    return delays


def test_restart_back_off_grows_is_jittered_and_bounded() -> None:
    h = HealthPolicy(restart_backoff_s=0.5, restart_backoff_max_s=4.0, restart_jitter=0.5)
    delays = restart_delays(1, 7, h)
    for k, d in enumerate(delays):
        base = min(4.0, 0.5 * 2**k)
        assert base <= d <= base * 1.5
    assert delays[-1] <= 4.0 * 1.5  # bounded: no faster, no slower than the cap allows
    assert delays != restart_delays(2, 7, h)  # jittered: another seed, other delays
    assert delays == restart_delays(1, 7, h)  # seeded: the same seed, the same delays


def test_restart_back_off_resets_after_a_success() -> None:
    h = HealthPolicy(restart_backoff_s=1.0, restart_jitter=0.0)
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=1)], health=h)
    for _ in range(3):
        (iid,) = p.live()
        p.lose(iid, 0.0)
        p.tick(100.0)
    p.submit("a", tasks(1), 100.0)
    (r,) = decisions_of(p.tick(100.0), RouteTask)
    p.finish(r, 101.0)
    (iid,) = p.live()
    p.lose(iid, 200.0)
    assert p.s.next_wakeup() == 201.0


def quarantined(p: Pool) -> list[QuarantineAgent]:
    return decisions_of(p.outs, QuarantineAgent)


def test_circuit_breaker_quarantines_then_probes_with_one_slot() -> None:
    h = HealthPolicy(breaker_failures=3, breaker_backoff_s=10.0, restart_jitter=0.0)
    p = Pool([spec("w", {"x": 0.9}, slots=2)], health=h,
             retry=RetryPolicy(base_s=1000.0, jitter=0.0))  # fmt: skip
    p.submit("a", tasks(6, max_attempts=5), 0.0)
    p.tick(0.0)
    first, second = p.running()
    p.finish(first, 1.0, Outcome.CRASH)
    p.tick(1.0)
    (third,) = [r for r in p.running() if r.task_id != second.task_id]
    p.finish(second, 2.0, Outcome.CRASH)
    assert quarantined(p) == []
    p.finish(third, 3.0, Outcome.CRASH)  # the third agent fault in a row
    (q,) = quarantined(p)
    assert (q.instance, q.for_s) == ("w", 10.0)
    assert "3 consecutive agent faults" in q.reason
    inst = p.s.agents["w"]
    assert inst.state is AgentState.QUARANTINED
    assert decisions_of(p.tick(12.0), RouteTask) == []
    assert p.s.waiting_reasons() == {"x": "3 tasks wait: no live agent offers 'x' (quarantined)"}
    # After the back-off, one probe: a single slot.
    assert p.s.next_wakeup() == 13.0
    (probe,) = decisions_of(p.tick(13.0), RouteTask)
    assert inst.state is AgentState.READY
    assert (inst.probing, inst.slots) == (True, 1)
    # The probe fails: quarantined again, twice as long.
    p.finish(probe, 14.0, Outcome.CRASH)
    assert [d.for_s for d in quarantined(p)] == [10.0, 20.0]
    (probe,) = decisions_of(p.tick(34.0), RouteTask)
    # The probe succeeds: the breaker closes, every slot is back.
    p.finish(probe, 35.0)
    assert (inst.probing, inst.slots, inst.consecutive_failures) == (False, 2, 0)
    assert len(decisions_of(p.tick(35.0), RouteTask)) == 2


def test_a_success_resets_the_failure_count() -> None:
    p = Pool([spec("w", {"x": 0.9})], health=HealthPolicy(breaker_failures=2),
             retry=RetryPolicy(base_s=0.0, jitter=0.0))  # fmt: skip
    p.submit("a", tasks(4, max_attempts=1), 0.0)
    for t, outcome in enumerate([Outcome.CRASH, Outcome.SUCCEEDED, Outcome.CRASH]):
        (r,) = decisions_of(p.tick(float(t)), RouteTask)
        p.finish(r, t + 0.5, outcome)
    assert quarantined(p) == []


# --- rate limits --------------------------------------------------------------------------------


def test_rate_limit_throttles_a_spec_and_releases_it_after_the_minute() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=2, hi=2, rate=3)])
    p.submit("a", tasks(7), 0.0)
    started = decisions_of(p.tick(0.0), RouteTask)
    assert len(started) == 2
    for r in started:
        p.finish(r, 1.0)
    assert len(decisions_of(p.tick(10.0), RouteTask)) == 1  # the third call of the minute
    for r in p.running():
        p.finish(r, 11.0)
    assert {i.state for i in p.s.agents.values()} == {AgentState.THROTTLED}
    assert decisions_of(p.tick(30.0), RouteTask) == []
    assert "throttled" in p.s.waiting_reasons()["x"]
    assert p.s.next_wakeup() == 60.0  # a minute after the first call of the window
    # The window slides: at 60 s only the call made at 10 s is still in it, so two may start.
    assert len(decisions_of(p.tick(60.0), RouteTask)) == 2
    assert {i.state for i in p.s.agents.values()} == {AgentState.THROTTLED}
    assert p.s.next_wakeup() == 70.0
    for r in p.running():
        p.finish(r, 61.0)
    assert len(decisions_of(p.tick(70.0), RouteTask)) == 1


def test_an_instance_that_starts_while_its_spec_is_throttled_is_throttled() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=5, rate=1)], pool=classic(cooldown_s=0.0))
    p.start = False
    p.submit("a", tasks(10), 0.0)
    p.tick(0.0)
    assert p.s.running == 1
    starting = [i for i in p.live() if p.s.agents[i].state is AgentState.STARTING]
    assert starting
    for iid in starting:
        p.s.agent_ready(iid, 1.0)
        assert p.s.agents[iid].state is AgentState.THROTTLED
    assert decisions_of(p.tick(1.0), RouteTask) == []
    assert len(decisions_of(p.tick(60.0), RouteTask)) == 1


# --- concurrency and resource limits -------------------------------------------------------------


def test_capability_limits_bound_running_attempts_of_a_capability() -> None:
    p = Pool([spec("w", {"x": 0.9, "y": 0.9}, slots=10)], capability_limits={"x": 2})
    p.submit("a", [*tasks(5), *tasks(3, cap="y", prefix="y")], 0.0)
    caps = [p.s.task("a", r.task_id).task.capability for r in decisions_of(p.tick(0.0), RouteTask)]
    assert sorted(caps) == ["x", "x", "y", "y", "y"]
    x_route = next(r for r in p.running() if r.task_id.startswith("t"))
    p.finish(x_route, 1.0)
    assert [r.task_id[0] for r in decisions_of(p.tick(1.0), RouteTask)] == ["t"]


def test_resource_limits_are_counting_semaphores_taken_all_or_nothing() -> None:
    p = Pool([spec("w", {"x": 0.9}, slots=10)], resource_limits={"db": 2})
    batch = [
        AgentTask("d1", "x", resources=("db",)),
        AgentTask("d2", "x", resources=("db",)),
        AgentTask("d3", "x", resources=("db",)),
        AgentTask("f1", "x", resources=("file",)),  # no limit given: one holder at a time
        AgentTask("f2", "x", resources=("file", "db")),
    ]
    p.submit("a", batch, 0.0)
    first = sorted(r.task_id for r in decisions_of(p.tick(0.0), RouteTask))
    assert first == ["d1", "d2", "f1"]  # db is full; f2 takes nothing while it waits
    assert p.s._held == {"db": 2, "file": 1}
    by_id = {r.task_id: r for r in p.running()}
    p.finish(by_id["d1"], 1.0)
    assert [r.task_id for r in decisions_of(p.tick(1.0), RouteTask)] == ["d3"]
    p.finish(by_id["f1"], 2.0)
    assert decisions_of(p.tick(2.0), RouteTask) == []  # file is free, db is not: f2 still waits
    p.finish(by_id["d2"], 3.0)
    assert [r.task_id for r in decisions_of(p.tick(3.0), RouteTask)] == ["f2"]


def test_waiting_reasons_name_capabilities_without_a_live_agent() -> None:
    p = Pool([spec("w", {"x": 0.9}), spec("v", {"y": 0.9})])
    p.start = False
    p.s.agent_ready("v", 0.0)
    p.lose("w", 0.0)
    p.submit("a", [*tasks(2), *tasks(1, cap="y", prefix="y")], 0.0)
    assert [r.task_id for r in decisions_of(p.tick(0.0), RouteTask)] == ["y0"]
    # Its only instance is lost and not yet restarted: the tasks wait, and say why.
    assert p.s.waiting_reasons() == {
        "x": "2 tasks wait: no live agent offers 'x' (none registered)"
    }
    wake = p.s.next_wakeup()
    assert wake is not None
    p.tick(wake)
    assert p.s.waiting_reasons() == {"x": "2 tasks wait: no live agent offers 'x' (starting)"}
    assert p.s.task("a", "t0").state is TaskState.READY  # waiting, not failed
    (iid,) = p.live("w")
    p.s.agent_ready(iid, wake + 1.0)
    assert len(decisions_of(p.tick(wake + 1.0), RouteTask)) == 1
    assert p.s.waiting_reasons() == {}


def test_a_spec_scaled_to_zero_still_takes_work_and_grows_from_zero() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=0, hi=3)])
    assert p.live() == []
    p.submit("a", tasks(1), 0.0)  # its capability is known though no instance is live
    outs = p.tick(0.0)
    (spawn,) = decisions_of(outs, SpawnAgent)
    assert spawn.reason.startswith("1 tasks of 'x' wait and no instance offers it")
    p.tick(0.0)
    (r,) = p.running()
    p.finish(r, 1.0)
    p.tick(1.0)
    assert p.s.next_wakeup() == 61.0
    p.tick(61.0)
    assert p.live() == []
    p.submit("b", tasks(1), 100.0)
    assert decisions_of(p.tick(100.0), SpawnAgent)


# --- backpressure and priorities -----------------------------------------------------------------


def test_a_submission_over_the_queue_bound_is_refused_and_nothing_is_dropped() -> None:
    p = Pool([spec("w", {"x": 0.9}, slots=2)], max_queued=10)
    p.submit("a", tasks(8), 0.0)
    with pytest.raises(CapacityError, match=r"the bound is 10; a batch of 3 was refused") as info:
        p.submit("b", tasks(3, prefix="u"), 0.0)
    assert info.value.bound == 10
    assert "b" not in p.s.runs
    assert p.s.queued == 8
    p.submit("c", tasks(2, prefix="v"), 0.0)  # exactly at the bound: accepted
    assert p.s.queued == 10
    now = 0.0
    while p.s.queued:
        now += 1.0
        p.tick(now)
        for r in p.running():
            p.finish(r, now)
    for run in ("a", "c"):
        assert all(rec.state is TaskState.SUCCEEDED for rec in p.s.runs[run].tasks.values())
    p.submit("b", tasks(3, prefix="u"), now)  # room again once work finished


def test_priorities_hold_under_overload() -> None:
    p = Pool([spec("w", {"x": 0.9})])
    p.submit("low", tasks(50, prefix="l"), 0.0)
    p.tick(0.0)
    order = []
    for k in range(1, 21):
        if k % 5 == 0:
            p.submit(f"high{k}", tasks(1, prefix=f"h{k}-", priority=5), float(k))
        (r,) = p.running()
        p.finish(r, float(k))
        order.extend(r.task_id for r in decisions_of(p.tick(float(k)), RouteTask))
    highs = [i for i, tid in enumerate(order) if tid.startswith("h")]
    # Each high-priority task started at the first free slot after it arrived.
    assert highs == [4, 9, 14, 19]


def test_aging_lets_a_long_waiting_task_pass_a_newer_higher_priority_one() -> None:
    # Within one run: "young" is released when the blocker ends, 130 s (two intervals) later.
    for priority, first in ((1, "old"), (3, "young")):  # 3 levels are more than its age
        p = Pool([spec("w", {"x": 0.9})], aging_interval_s=60.0)
        p.submit("a", [AgentTask("blocker", "x", priority=9), AgentTask("old", "x", priority=0),
                       AgentTask("young", "x", priority=priority, depends_on=("blocker",))],
                 0.0)  # fmt: skip
        (blocker,) = decisions_of(p.tick(0.0), RouteTask)
        p.finish(blocker, 130.0)
        assert [r.task_id for r in decisions_of(p.tick(130.0), RouteTask)] == [first]


# --- a poison task, on virtual time ---------------------------------------------------------------


def test_a_task_that_kills_every_agent_fails_after_max_attempts_without_a_respawn_storm() -> None:
    h = HealthPolicy(restart_backoff_s=0.5, restart_jitter=0.5)
    p = Pool([spec("w", {"x": 0.9}, lo=2, hi=2)], health=h, seed=3)
    p.submit("a", [AgentTask("poison", "x", max_attempts=3), *tasks(10)], 0.0)
    now = 0.0
    rng = random.Random(0)
    for _ in range(200):
        for r in p.running():
            if r.task_id == "poison":
                p.lose(r.instance, now)  # it kills whatever runs it
            elif rng.random() < 0.5:
                p.finish(r, now)
        if not p.s.queued:
            break
        p.tick(now)
        now += 0.1
    rec = p.s.task("a", "poison")
    assert rec.state is TaskState.FAILED
    assert [a.outcome for a in rec.attempts] == [Outcome.CRASH] * 3
    assert len({a.agent_instance for a in rec.attempts}) == 3
    (fail,) = decisions_of(p.outs, FailTask)
    assert fail.reason.startswith("all 3 attempts failed")
    others = [r for tid, r in p.s.runs["a"].tasks.items() if tid != "poison"]
    assert all(r.state is TaskState.SUCCEEDED for r in others)
    for t in (now + 10.0, now + 1000.0):
        p.tick(t)
    restarts = [d for d in decisions_of(p.outs, SpawnAgent) if d.reason.startswith("restart")]
    assert len(restarts) == 3  # one per instance it killed, then quiet
    assert len(decisions_of(p.outs, SpawnAgent)) == 2 + 3
    assert len(p.live()) == 2


# --- the new rules through the scheduler (the pool's defaults) -----------------------------------


def test_a_spike_does_not_grow_the_pool_a_sustained_queue_does() -> None:
    spike = Pool([spec("w", {"x": 0.9}, lo=1, hi=10)], pool=PoolPolicy())
    spike.submit("a", tasks(9), 0.0)
    spike.tick(0.0)  # one runs, 8 wait: deep now, but its average has just begun to rise
    assert spike.s.queue_depth() == {"x": 8}
    assert decisions_of(spike.outs, ScaleResources) == []
    assert spike.s.next_wakeup() == pytest.approx(5.0 * math.log(8 / 3))
    for t in (1.0, 2.0, 3.0):  # the queue drains on its own before the average gets there
        (r,) = spike.running()
        spike.finish(r, t)
        spike.tick(t)
    assert spike.s.queue_depth() == {"x": 5}
    assert spike.s.next_wakeup() is None
    assert decisions_of(spike.outs, ScaleResources) == []

    held = Pool([spec("w", {"x": 0.9}, lo=1, hi=10)], pool=PoolPolicy())
    held.submit("a", tasks(9), 0.0)
    held.tick(0.0)
    wake = held.s.next_wakeup()
    assert wake is not None
    assert decisions_of(held.tick(wake - 1e-6), ScaleResources) == []
    (grow,) = decisions_of(held.tick(wake), ScaleResources)
    assert (grow.from_n, grow.to_n) == (1, 4)  # back to the threshold, as the old rule did
    assert "(averaged over 5s)" in grow.reason


def test_the_target_utilisation_retires_idle_surplus_while_load_remains() -> None:
    # Growth at once (threshold 0, no window), so the test is about the target rule alone.
    policy = PoolPolicy(spawn_threshold=0, scale_up_window_s=0.0)
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=10)], pool=policy)
    p.submit("a", tasks(3), 0.0)
    p.tick(0.0)
    p.tick(0.0)
    assert (len(p.live()), len(p.running())) == (3, 3)  # 3 busy slots from 0 s on
    assert p.s.next_wakeup() is None  # all busy: nothing to retire
    first, *others = p.running()
    for r in others:  # at 100 s the load falls to one slot
        p.finish(r, 100.0)
    p.tick(100.0)
    # Before the idle timeout (60 s), exactly when the busy slots' average (over 20 s) has
    # fallen to what two instances keep 90% busy: 1.8.
    average = 3.0 * (1.0 - math.exp(-100.0 / 20.0))
    wake = p.s.next_wakeup()
    assert wake == pytest.approx(100.0 + 20.0 * math.log((average - 1.0) / 0.8), rel=1e-12)
    assert wake is not None
    assert decisions_of(p.tick(wake - 1e-6), TerminateAgent) == []
    (stop,) = decisions_of(p.tick(wake), TerminateAgent)
    assert "target utilisation" in stop.reason
    assert stop.instance != first.instance  # a busy instance is never stopped
    assert len(p.live()) == 2
    # One busy slot never makes the second instance spare at 90%: the idle timeout decides.
    assert p.s.next_wakeup() == 160.0
    (last,) = decisions_of(p.tick(160.0), TerminateAgent)
    assert "idle for at least 60s" in last.reason
    assert p.live() == [first.instance]


def test_the_target_rule_keeps_what_the_busy_slots_need_and_waits_out_the_cooldown() -> None:
    p = Pool([spec("w", {"x": 0.9}, lo=1, hi=10)], pool=PoolPolicy(scale_up_window_s=0.0))
    p.submit("a", tasks(12), 0.0)
    p.tick(0.0)
    p.tick(0.0)
    assert len(p.live()) == 7
    for r in p.running()[1:]:  # six finish; the queue's last five take their slots
        p.finish(r, 1.0)
    p.tick(1.0)
    assert (len(p.running()), p.s.queue_depth()) == (6, {})
    assert decisions_of(p.tick(4.0), TerminateAgent) == []  # within the cooldown of the growth
    # Six busy slots need seven instances at 90%: no surplus, only the idle timeout is due.
    assert p.s.next_wakeup() == 61.0


def test_tasks_parked_on_a_held_resource_do_not_make_the_pool_grow() -> None:
    # 20 tasks need one exclusive lock: at most one can run, so one instance is enough.
    p = Pool([spec("w", {"x": 0.9}, hi=10)])
    p.submit("r", tasks(20, resources=("lock",)), 0.0)
    now = 0.0
    for _ in range(40):
        p.tick(now)
        running = p.running()
        if running:
            now += 1.0
            p.finish(running[0], now)
        else:
            now += 1.0
    assert len(p.live("w")) == 1
    assert p.s.queues.runnable(1)["x"] <= 1
    # Without the lock the same queue grows the pool.
    q = Pool([spec("w", {"x": 0.9}, hi=10)])
    q.submit("r", tasks(20), 0.0)
    q.tick(0.0)
    q.tick(10.0)
    assert len(q.live("w")) > 1
