"""Cost-aware routing: the ``cost`` part of the score, the objective ``cheapest_meeting`` (the
cheapest spec whose expected success for the task's complexity reaches a target), its fallback,
learned cost against declared, and the expected cost in every candidate's breakdown, as
literal tables on virtual time."""

from __future__ import annotations

import pytest

from metaagent import AgentTask, Outcome, RouteTask, RoutingWeights, Scheduler, SchedulerConfig
from metaagent.core.learning import BANDS, Learning, band_counts, band_of
from metaagent.testing import NO_JITTER_RETRY, agent_spec, decisions_of

CHEAP = agent_spec("cheap", {"work": 0.9}, cost_per_call_usd=0.001)
MID = agent_spec("mid", {"work": 0.9}, cost_per_call_usd=0.005)
STRONG = agent_spec("strong", {"work": 0.9}, cost_per_call_usd=0.025)
CHEAPEST = RoutingWeights(objective="cheapest_meeting", quality_target=0.95)


def sched(*specs: object, weights: RoutingWeights = CHEAPEST) -> Scheduler:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY, weights=weights))
    for spec in specs:
        s.add_agent(spec, 0.0)  # type: ignore[arg-type]
    return s


def learn(s: Scheduler, spec: str, complexity: float, ok: int, bad: int) -> None:
    """``ok`` successes and ``bad`` failures of ``spec`` on tasks of ``complexity``, 1 s each."""
    for _ in range(ok):
        s.learning.record(spec, "work", True, 1.0, complexity)
    for _ in range(bad):
        s.learning.record(spec, "work", False, 1.0, complexity)


def route(s: Scheduler, complexity: float, tid: str = "t") -> RouteTask:
    s.submit(tid, [AgentTask(tid, "work", complexity=complexity)], 0.0)
    (r,) = decisions_of(s.dispatch(0.0), RouteTask)
    return r


# --- the cost part in the weighted score (objective earliest_finish) ---------------------------

# (price weight in s per USD) -> winner: equal speed and success, so only the price can decide
# (a tie goes to the first candidate visited: the first spec added)
WEIGHTED = [
    (0.0, "strong"),  # weight 0 (the default): the price is shown, not counted
    (1000.0, "cheap"),  # 1000 s per USD: strong's $0.025 costs 25 s, cheap's $0.001 1 s
]


@pytest.mark.parametrize(("weight", "winner"), WEIGHTED)
def test_the_cost_part_counts_by_its_weight(weight: float, winner: str) -> None:
    s = sched(STRONG, CHEAP, weights=RoutingWeights(cost=weight))
    r = route(s, 0.5)
    assert r.spec == winner
    costs = {c.agent.split("#")[0]: c.breakdown["cost"] for c in r.candidates}
    assert costs == {"strong": 0.025, "cheap": 0.001}
    wait, run, retry, scarcity, penalty, _, cost = r.parts
    assert (wait, scarcity, penalty) == (0.0, 0.0, 0.0)
    assert r.score == pytest.approx(-(run + retry + weight * cost))
    signed = RoutingWeights(cost=weight).signed()
    assert r.score == pytest.approx(sum(signed[k] * v for k, v in r.breakdown.items()), abs=1e-3)


def test_an_agent_that_declares_no_cost_and_reports_none_is_taken_as_free() -> None:
    s = sched(agent_spec("local", {"work": 0.9}), STRONG)
    r = route(s, 0.2)
    assert r.spec == "local"
    assert r.breakdown["cost"] == 0.0


# --- cheapest_meeting ----------------------------------------------------------------------------

# What the tiers did so far, per complexity: cheap is good on easy tasks only, mid up to the
# middle, strong everywhere. (complexity -> (cheap, mid, strong) as (successes, failures))
HISTORY = {
    0.1: ((40, 0), (40, 0), (40, 0)),
    0.5: ((5, 15), (40, 0), (40, 0)),
    0.9: ((0, 20), (10, 10), (40, 0)),
}

# (task complexity, winner, whether it reaches the target)
CHEAPEST_TABLE = [
    (0.05, "cheap", True),
    (0.12, "cheap", True),
    (0.5, "mid", True),
    (0.55, "mid", True),
    (0.9, "strong", True),
    (0.95, "strong", True),
]


def tiers() -> Scheduler:
    s = sched(STRONG, MID, CHEAP)
    for c, rows in HISTORY.items():
        for name, (ok, bad) in zip(("cheap", "mid", "strong"), rows, strict=True):
            learn(s, name, c, ok, bad)
    return s


@pytest.mark.parametrize(("complexity", "winner", "met"), CHEAPEST_TABLE)
def test_cheapest_meeting_takes_the_cheapest_agent_good_enough_for_the_task(
    complexity: float, winner: str, met: bool
) -> None:
    r = route(tiers(), complexity)
    assert r.spec == winner
    assert r.reason.startswith("cheapest meeting success 0.95")
    assert ("no candidate" in r.reason) is not met
    assert r.breakdown["success"] >= 0.95
    assert r.breakdown["cost"] == {"cheap": 0.001, "mid": 0.005, "strong": 0.025}[winner]


def test_every_candidate_shows_its_expected_cost_and_success() -> None:
    r = route(tiers(), 0.9)
    shown = {c.agent.split("#")[0]: c.breakdown for c in r.candidates}
    assert set(shown) == {"cheap", "mid", "strong"}
    assert {k: b["cost"] for k, b in shown.items()} == {
        "cheap": 0.001, "mid": 0.005, "strong": 0.025,
    }  # fmt: skip
    assert shown["cheap"]["success"] < shown["mid"]["success"] < 0.95 <= shown["strong"]["success"]
    assert r.to_json()["candidates"][0]["breakdown"]["cost"] == 0.025  # type: ignore[index]


def test_when_none_reaches_the_target_the_best_expected_success_is_taken_and_said() -> None:
    s = sched(STRONG, MID, CHEAP)
    for name, ok, bad in (("cheap", 5, 15), ("mid", 10, 10), ("strong", 14, 6)):
        learn(s, name, 0.9, ok, bad)
    r = route(s, 0.9)
    assert r.spec == "strong"
    assert "no candidate is expected to reach it" in r.reason
    assert r.breakdown["success"] < 0.95


def test_a_busy_cheap_agent_is_waited_for_and_the_wait_is_in_the_breakdown() -> None:
    s = tiers()
    first = route(s, 0.1, "a")
    assert first.spec == "cheap"
    waiting = s.router.route(AgentTask("b", "work", complexity=0.1), 0.0)
    assert waiting is not None
    assert waiting.instance is None  # cheap is busy: wait for it
    shown = {c.agent: c.breakdown for c in waiting.candidates}
    # cheap frees when its attempt is expected to end: a's expected run
    assert (shown["cheap"]["wait"], shown["cheap"]["cost"]) == (round(first.parts[1], 4), 0.001)
    assert (shown["strong"]["wait"], shown["strong"]["cost"]) == (0.0, 0.025)
    s.submit("b", [AgentTask("b", "work", complexity=0.1)], 0.0)
    assert decisions_of(s.dispatch(0.0), RouteTask) == []  # waits for cheap; strong is free
    s.finish("a", "a", 1, Outcome.SUCCEEDED, 1.0)
    (r,) = decisions_of(s.dispatch(1.0), RouteTask)
    assert (r.task_id, r.spec) == ("b", "cheap")
    assert "waited 1s for cheap while strong was free" in r.reason


def test_learned_cost_overrides_the_declared_one() -> None:
    s = sched(STRONG, CHEAP)
    for name in ("strong", "cheap"):
        learn(s, name, 0.1, 40, 0)
    r = route(s, 0.1, "a")
    assert (r.spec, r.breakdown["cost"]) == ("cheap", 0.001)  # declared: $0.001 < $0.025
    s.finish("a", "a", 1, Outcome.SUCCEEDED, 1.0)
    for _ in range(3):  # strong's attempts report what they cost: less than declared
        s.learning.record("strong", "work", True, 1.0, 0.1, cost_usd=0.0002)
    assert s.learning.cost("strong", "work") == pytest.approx(0.0002)
    assert s.learning.cost("cheap", "work") is None  # nothing reported: the declared price
    r = route(s, 0.1, "b")
    assert (r.spec, r.breakdown["cost"]) == ("strong", 0.0002)


# --- learning per complexity band, and the settings' checks -----------------------------------

# complexity -> band (fifths would hide a knee; BANDS tenths of 0..1)
BAND_TABLE = [(0.0, 0), (0.05, 0), (0.1, 1), (0.55, 5), (0.99, 9), (1.0, 9)]


@pytest.mark.parametrize(("complexity", "band"), BAND_TABLE)
def test_a_task_falls_in_the_band_of_its_complexity(complexity: float, band: int) -> None:
    assert BANDS == 10
    assert band_of(complexity) == band


def test_a_band_counts_its_neighbours_at_half_weight() -> None:
    learning = Learning()
    for c, ok in ((0.15, True), (0.25, True), (0.25, False), (0.35, False), (0.55, True)):
        learning.record("a", "work", ok, 1.0, c)
    assert learning.band("a", "work", 0.25) == (1.5, 1.5)  # band 2: (1, 1) + (0.5, 0) + (0, 0.5)
    assert learning.band("a", "work", 0.95) == (0.0, 0.0)
    assert learning.band("b", "work", 0.25) is None
    counts = learning.bands[("a", "work")]
    assert band_counts(counts, 0) == (0.5, 0.0)


def test_a_mean_cost_ignores_attempts_that_report_none() -> None:
    learning = Learning()
    for cost in (0.01, None, 0.03, float("nan"), -1.0):
        learning.record("a", "work", True, 1.0, 0.5, cost_usd=cost)
    arm = learning.arms[("a", "work")]
    assert (arm.costs, arm.mean_cost_usd) == (2, pytest.approx(0.02))


# bad routing settings -> the field named in the error
BAD = [
    (RoutingWeights(objective="cheapest"), "routing.objective"),  # type: ignore[arg-type]
    (RoutingWeights(quality_target=0.0), "routing.quality_target"),
    (RoutingWeights(quality_target=1.5), "routing.quality_target"),
    (RoutingWeights(cost=-1.0), "routing.cost_weight"),
    (RoutingWeights(cost=float("inf")), "routing.cost_weight"),
]


@pytest.mark.parametrize(("weights", "field"), BAD)
def test_bad_routing_settings_are_refused_naming_the_field(
    weights: RoutingWeights, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Scheduler(SchedulerConfig(weights=weights))


def test_a_declared_cost_must_be_a_finite_amount() -> None:
    for bad in (-0.5, float("inf"), float("nan")):
        problems = agent_spec("a", {"work": 1.0}, cost_per_call_usd=bad).problems()
        assert [p for p in problems if p.startswith("cost_per_call_usd")], bad
