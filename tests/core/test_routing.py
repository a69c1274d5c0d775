"""Routing: the score's parts, and which agent wins when one thing differs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from metaagent import AgentSpec, AgentTask, RouteTask, RoutingWeights, Scheduler
from metaagent.core.decisions import SCORE_PARTS
from metaagent.core.instances import AgentInstance, AgentState
from metaagent.core.learning import Learning
from metaagent.core.routing import Router

if TYPE_CHECKING:
    from collections.abc import Callable

ONLY = {name: 0.0 for name in SCORE_PARTS}


def only(**weights: float) -> RoutingWeights:
    """Weights with every part off except the named ones."""
    return RoutingWeights(**{**ONLY, **weights})


def router(
    specs: list[AgentSpec], weights: RoutingWeights | None = None, max_candidates: int = 32
) -> Router:
    r = Router(Learning(), weights, max_candidates)
    for spec in specs:
        r.add(AgentInstance(spec.name, spec, spec.concurrency))
    return r


def task(complexity: float = 0.5, cap: str = "code") -> AgentTask:
    return AgentTask("t", cap, complexity=complexity)


def test_route_decision_explains_its_score(make_spec: Callable[..., AgentSpec]) -> None:
    s = Scheduler()
    s.add_agent(make_spec("alpha", {"code": 0.9}), now=0.0)
    s.add_agent(make_spec("beta", {"code": 0.4}), now=0.0)
    s.submit("r", [AgentTask("t", "code", complexity=0.7)], now=0.0)
    (route,) = s.dispatch(now=0.0)
    assert isinstance(route, RouteTask)
    assert route.spec == "alpha"
    assert set(route.breakdown) == set(SCORE_PARTS)
    assert all(0.0 <= v <= 1.0 for v in route.breakdown.values())
    assert route.breakdown["capability"] == 0.9
    assert [c.agent for c in route.candidates] == ["alpha", "beta"]
    assert route.candidates[0].score == route.score > route.candidates[1].score
    for cand in route.candidates:
        assert set(cand.breakdown) == set(SCORE_PARTS)
        assert all(0.0 <= v <= 1.0 for v in cand.breakdown.values())
    data = route.to_json()
    assert data["type"] == "route_task"
    assert data["agent"] == "alpha"
    assert data["breakdown"] == route.breakdown


def test_score_is_the_weighted_sum_of_its_parts(make_spec: Callable[..., AgentSpec]) -> None:
    w = RoutingWeights(capability=0.3, fit=0.2, load=0.1, success=0.25, speed=0.15)
    r = router([make_spec("alpha", {"code": 0.6}, concurrency=4)], w)
    inst = r.instances("code")[0]
    inst.running = 1
    total, parts = r.score(task(complexity=0.8), inst)
    assert list(parts) == list(SCORE_PARTS)
    assert parts["capability"] == 0.6
    assert parts["fit"] == pytest.approx(0.8)  # 1 - (0.8 - 0.6)
    assert parts["load"] == 0.75  # 3 of 4 slots free
    assert parts["success"] == pytest.approx((1 + 2 * 0.6) / 4)  # prior mean, nothing learned
    assert parts["speed"] == 0.5  # nothing learned
    expected = sum(getattr(w, k) * v for k, v in parts.items())
    assert total == pytest.approx(expected)


def test_higher_proficiency_wins_when_all_else_is_equal(
    make_spec: Callable[..., AgentSpec],
) -> None:
    r = router([make_spec("weak", {"code": 0.5}), make_spec("strong", {"code": 0.8})])
    choice = r.route(task(complexity=0.0))
    assert choice is not None
    assert choice.instance.spec.name == "strong"
    assert [c.agent for c in choice.candidates] == ["strong", "weak"]


def test_load_lowers_the_score(make_spec: Callable[..., AgentSpec]) -> None:
    spec = make_spec("pool", {"code": 0.7}, concurrency=4)
    r = Router(Learning())
    busy = AgentInstance("busy", spec, 4)
    idle = AgentInstance("idle", spec, 4)
    r.add(busy)
    r.add(idle)
    busy.running = 3
    r.adjust_free(busy, -3)
    s_busy, p_busy = r.score(task(), busy)
    s_idle, p_idle = r.score(task(), idle)
    assert (p_busy["load"], p_idle["load"]) == (0.25, 1.0)
    assert s_busy < s_idle
    choice = r.route(task())
    assert choice is not None
    assert choice.instance is idle


def test_complexity_fit_favours_strong_agents_for_hard_tasks(
    make_spec: Callable[..., AgentSpec],
) -> None:
    r = router([make_spec("weak", {"code": 0.5}), make_spec("strong", {"code": 0.95})], only(fit=1))
    weak, strong = r.instances("code")[1], r.instances("code")[0]
    assert r.score(task(complexity=0.95), weak)[1]["fit"] == pytest.approx(0.55)
    assert r.score(task(complexity=0.95), strong)[1]["fit"] == 1.0
    hard = r.route(task(complexity=0.95))
    assert hard is not None
    assert hard.instance.spec.name == "strong"
    # An easy task fits both fully: fit alone does not separate them.
    assert r.score(task(complexity=0.3), weak)[0] == r.score(task(complexity=0.3), strong)[0]


def test_learned_success_and_speed_move_the_choice(make_spec: Callable[..., AgentSpec]) -> None:
    r = router([make_spec("a", {"code": 0.7}), make_spec("b", {"code": 0.7})])
    for _ in range(5):
        r.learning.record("a", "code", False, None)
        r.learning.record("b", "code", True, 1.0)
    r.learning.record("a", "code", True, 9.0)
    a, b = r.instances("code")
    if a.spec.name != "a":
        a, b = b, a
    pa, pb = r.score(task(), a)[1], r.score(task(), b)[1]
    assert pa["success"] < pb["success"]
    assert pa["speed"] < 0.5 < pb["speed"]
    choice = r.route(task())
    assert choice is not None
    assert choice.instance is b


def test_max_candidates_bounds_the_instances_scored(make_spec: Callable[..., AgentSpec]) -> None:
    specs = [make_spec(f"s{i}", {"code": 0.9 - i / 20}) for i in range(10)]
    wide = router(specs)
    choice = wide.route(task())
    assert choice is not None
    assert len(choice.candidates) == 3  # the top three are shown
    narrow = router(specs, max_candidates=2)
    choice = narrow.route(task())
    assert choice is not None
    assert [c.agent for c in choice.candidates] == ["s0", "s1"]
    # Learning makes the weakest spec the best, but with one candidate only the strongest
    # free instance is scored at all.
    one = router(specs, only(success=1), max_candidates=1)
    for _ in range(50):
        one.learning.record("s9", "code", True, None)
    choice = one.route(task())
    assert choice is not None
    assert choice.instance.spec.name == "s0"
    assert len(choice.candidates) == 1
    everyone = router(specs, only(success=1))
    for _ in range(50):
        everyone.learning.record("s9", "code", True, None)
    choice = everyone.route(task())
    assert choice is not None
    assert choice.instance.spec.name == "s9"


def test_busy_instances_are_not_scored(make_spec: Callable[..., AgentSpec]) -> None:
    r = router([make_spec("strong", {"code": 0.9}), make_spec("weak", {"code": 0.3})])
    strong = next(i for i in r.instances("code") if i.spec.name == "strong")
    strong.running = 1
    r.adjust_free(strong, -1)
    choice = r.route(task())
    assert choice is not None
    assert choice.instance.spec.name == "weak"
    assert [c.agent for c in choice.candidates] == ["weak"]
    weak = choice.instance
    weak.running = 1
    r.adjust_free(weak, -1)
    assert not r.has_free("code")
    assert r.route(task()) is None


def test_only_ready_instances_take_work(make_spec: Callable[..., AgentSpec]) -> None:
    r = router([make_spec("strong", {"code": 0.9}), make_spec("weak", {"code": 0.3})])
    strong = next(i for i in r.instances("code") if i.spec.name == "strong")
    strong.state = AgentState.DRAINING
    choice = r.route(task())
    assert choice is not None
    assert choice.instance.spec.name == "weak"


def test_avoid_set_passes_over_failed_specs_while_another_exists(
    make_spec: Callable[..., AgentSpec],
) -> None:
    r = router(
        [
            make_spec("alpha", {"code": 0.9}),
            make_spec("beta", {"code": 0.5}),
            make_spec("gamma", {"code": 0.4}),
        ]
    )
    c = r.route(task(), avoid={"alpha"})
    assert c is not None
    assert c.instance.spec.name == "beta"
    c = r.route(task(), avoid={"alpha", "beta"})
    assert c is not None
    assert c.instance.spec.name == "gamma"
    # Every spec failed once: the best one may try again.
    c = r.route(task(), avoid={"alpha", "beta", "gamma"})
    assert c is not None
    assert c.instance.spec.name == "alpha"


def test_unknown_capability_is_not_routed(make_spec: Callable[..., AgentSpec]) -> None:
    r = router([make_spec("alpha", {"code": 0.9, "test": 0.2})])
    assert r.route(task(cap="design")) is None
    assert not r.serves("design")
    assert r.capabilities() == ["code", "test"]
    assert r.specs_for("test") == {"alpha"}


def test_index_keeps_instances_strongest_first(make_spec: Callable[..., AgentSpec]) -> None:
    r = router(
        [
            make_spec("mid", {"code": 0.5}),
            make_spec("top", {"code": 0.9}),
            make_spec("low", {"code": 0.1}),
        ]
    )
    assert [i.spec.name for i in r.instances("code")] == ["top", "mid", "low"]
    r.remove(r.instances("code")[0])
    assert [i.spec.name for i in r.instances("code")] == ["mid", "low"]
