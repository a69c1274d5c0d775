"""Routing: earliest expected finish over every capable spec, busy ones included; waiting,
scarcity, soft fallback, proficiency floors and rank revision, as literal tables on virtual
time."""

from __future__ import annotations

import pytest

from metaagent import AgentTask, Outcome, RouteTask, RoutingWeights, Scheduler, SchedulerConfig
from metaagent.core.decisions import SCORE_PARTS
from metaagent.core.instances import AgentInstance
from metaagent.core.learning import Learning
from metaagent.core.routing.router import Router
from metaagent.errors import WorkflowError
from metaagent.testing import NO_JITTER_RETRY, agent_spec, decisions_of

CODER_A = agent_spec("coder-a", {"code": 0.8, "docs": 0.3}, concurrency=2)
CODER_B = agent_spec("coder-b", {"code": 0.6})
AUDITOR = agent_spec("auditor", {"audit": 0.9, "code": 0.2})
WRITER = agent_spec("writer", {"docs": 0.9})


def sched(*specs: object, **config: object) -> Scheduler:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY, **config))  # type: ignore[arg-type]
    for spec in specs:
        s.add_agent(spec, 0.0)  # type: ignore[arg-type]
    return s


def learn(s: Scheduler, spec: str, cap: str, ok: int, bad: int, unit_s: float) -> None:
    """Seed what learning knows: ``ok``/``bad`` attempts of ``unit_s`` per unit of complexity."""
    for _ in range(ok):
        s.learning.record(spec, cap, True, unit_s, 0.5)
    for _ in range(bad):
        s.learning.record(spec, cap, False, None, 0.5)


def routes(outs: object) -> list[tuple[str, str]]:
    return [(r.task_id or "", r.spec) for r in decisions_of(outs, RouteTask)]  # type: ignore[arg-type]


def test_the_score_is_minus_the_weighted_cost_and_its_parts_are_named() -> None:
    s = sched(agent_spec("alpha", {"code": 0.9}))
    learn(s, "alpha", "code", 8, 2, 10.0)
    s.submit("r", [AgentTask("t", "code", complexity=0.5)], 0.0)
    (r,) = s.dispatch(0.0)
    assert set(r.breakdown) == set(SCORE_PARTS)
    wait, run, retry, scarcity, penalty, p, cost = r.parts
    # Beta(1 + 2*0.9 + 8, 1 + 2*0.1 + 2) -> 10.8 / 14.0; 10 s per unit at complexity 0.5.
    assert (wait, run, scarcity, penalty, cost) == (0.0, 10.0, 0.0, 0.0, 0.0)
    assert p == pytest.approx(10.8 / 14.0)
    assert retry == pytest.approx(10.0 * (1 - p) / p)
    assert r.score == pytest.approx(-(run + retry))
    signed = RoutingWeights().signed()
    assert r.score == pytest.approx(sum(signed[k] * v for k, v in r.breakdown.items()), abs=1e-3)
    assert "earliest expected finish" in r.reason


# A busy fast agent against a free slow one: the task waits when waiting finishes sooner.
# (busy agent's remaining time, free agent's unit duration) -> who takes the task now
WAIT_TABLE = [
    (2.0, 20.0, None),  # fast one frees in 2 s, takes 10 s: 12 < 20 -> wait
    (15.0, 20.0, "slow"),  # frees in 15 s: 25 > 20 -> start now on the slow one
]


@pytest.mark.parametrize(("remaining", "slow_unit", "taker"), WAIT_TABLE)
def test_a_task_may_wait_for_a_busy_agent_that_finishes_it_sooner(
    remaining: float, slow_unit: float, taker: str | None
) -> None:
    s = sched(agent_spec("fast", {"code": 0.9}), agent_spec("slow", {"code": 0.9}))
    learn(s, "fast", "code", 50, 0, 10.0)
    learn(s, "slow", "code", 50, 0, slow_unit)
    # estimate_s is scaled by fast's speed against the capability's mean: it ends at ``remaining``
    s.submit("r", [AgentTask("busy", "code", estimate_s=remaining * (10 + slow_unit) / 20)], 0.0)
    assert routes(s.dispatch(0.0)) == [("busy", "fast")]
    s.submit("q", [AgentTask("t", "code")], 0.0)
    got = routes(s.dispatch(0.0))
    assert got == ([] if taker is None else [("t", taker)])
    if taker is None:  # once the fast one frees, the route says it waited
        s.finish("r", "busy", 1, Outcome.SUCCEEDED, remaining)
        (r,) = decisions_of(s.dispatch(remaining), RouteTask)
        assert (r.task_id, r.spec) == ("t", "fast")
        assert f"waited {remaining:.3g}s" in r.reason
        assert "slow" in r.reason
    else:  # it did not wait, and says what waiting would have cost
        assert s.task("q", "t").attempts[0].agent == "slow"


def test_a_route_that_did_not_wait_says_what_waiting_would_have_cost() -> None:
    s = sched(agent_spec("fast", {"code": 0.9}), agent_spec("slow", {"code": 0.9}))
    learn(s, "fast", "code", 50, 0, 10.0)
    learn(s, "slow", "code", 50, 0, 20.0)
    s.submit("r", [AgentTask("busy", "code", estimate_s=24.0)], 0.0)  # ends at 16 on fast
    s.dispatch(0.0)
    s.submit("q", [AgentTask("t", "code")], 1.0)
    (r,) = decisions_of(s.dispatch(1.0), RouteTask)
    assert r.spec == "slow"
    runner_up = r.candidates[1]
    assert runner_up.agent == "fast"
    assert runner_up.breakdown["wait"] == pytest.approx(15.0)
    assert "waiting 15s for fast would cost" in r.reason


def test_later_tasks_see_the_slots_claimed_by_tasks_that_chose_to_wait() -> None:
    # One fast agent (10 s) is busy for 1 s more; a slow free one takes 25 s. The first queued
    # task waits (11 s), the second sees the fast slot after it (21 s), the third would finish
    # at 31 s there: it starts now on the slow one (25 s).
    s = sched(agent_spec("fast", {"code": 0.9}), agent_spec("slow", {"code": 0.9}))
    learn(s, "fast", "code", 100, 0, 10.0)
    learn(s, "slow", "code", 100, 0, 25.0)
    s.submit("b", [AgentTask("busy", "code", estimate_s=1.0)], 0.0)
    s.dispatch(0.0)
    s.submit("q", [AgentTask(f"t{i}", "code") for i in range(3)], 0.0)
    assert routes(s.dispatch(0.0)) == [("t2", "slow")]


def test_scarce_agent_is_kept_for_the_work_only_it_can_do() -> None:
    # Both coders busy; the auditor is free and could do code (0.2), but audits are queued
    # that only it serves: the code task waits for a coder, the audit goes to the auditor.
    s = sched(CODER_A, CODER_B, AUDITOR, WRITER)
    for spec, cap in (("coder-a", "code"), ("coder-b", "code"), ("auditor", "code")):
        learn(s, spec, cap, 20, 0, 10.0)
    learn(s, "auditor", "audit", 20, 0, 10.0)
    s.submit("busy", [AgentTask(f"c{i}", "code", estimate_s=5.0) for i in range(3)], 0.0)
    assert sorted(spec for _, spec in routes(s.dispatch(0.0))) == ["coder-a", "coder-a", "coder-b"]
    s.submit("w", [AgentTask("code", "code"), AgentTask("audit1", "audit"),
                   AgentTask("audit2", "audit", depends_on=("audit1",))], 0.0)  # fmt: skip
    assert routes(s.dispatch(0.0)) == [("audit1", "auditor")]
    # With no audit work left or coming, the auditor may take code.
    s2 = sched(CODER_A, CODER_B, AUDITOR, WRITER)
    for spec, cap in (("coder-a", "code"), ("coder-b", "code"), ("auditor", "code")):
        learn(s2, spec, cap, 20, 0, 10.0)
    s2.submit("busy", [AgentTask(f"c{i}", "code", estimate_s=50.0) for i in range(3)], 0.0)
    s2.dispatch(0.0)
    s2.submit("w", [AgentTask("code", "code")], 0.0)
    assert routes(s2.dispatch(0.0)) == [("code", "auditor")]


def test_scarcity_part_is_the_duration_times_share_times_pressure() -> None:
    r = Router(Learning())
    for spec in (AUDITOR, CODER_B):
        r.add(AgentInstance(spec.name, spec, spec.concurrency))
    r.waiting = {"audit": 2}  # two audits queued on one auditor slot: pressure 1
    r.pending = {}
    score, parts = r.score(AgentTask("t", "code"), "auditor", 0.0)
    assert parts["scarcity"] == pytest.approx(parts["run"] * 1.0 * 1.0)
    r.waiting = {}
    r.pending = {"audit": 1}  # half of a pending audit over one slot
    _, parts = r.score(AgentTask("t", "code"), "auditor", 0.0)
    assert parts["scarcity"] == pytest.approx(parts["run"] * 0.5)
    _, parts = r.score(AgentTask("t", "code"), "coder-b", 0.0)
    assert parts["scarcity"] == 0.0  # it serves nothing else
    assert score < 0


# Soft fallback: (other spec's remaining busy time, back-off) -> who takes the retry.
FALLBACK_TABLE = [
    (0.5, "beta"),  # beta frees within the back-off (1 s): the retry goes to beta
    (30.0, "alpha"),  # beta is busy for long: alpha, which failed, takes it back at once
]


@pytest.mark.parametrize(("beta_busy_s", "taker"), FALLBACK_TABLE)
def test_a_failed_spec_is_penalised_for_the_retry_not_forbidden(
    beta_busy_s: float, taker: str
) -> None:
    s = sched(agent_spec("beta", {"code": 0.9}), agent_spec("alpha", {"code": 0.9}))
    learn(s, "alpha", "code", 30, 0, 4.0)
    learn(s, "beta", "code", 30, 0, 4.0)
    s.submit("b", [AgentTask("busy", "code", estimate_s=beta_busy_s + 1)], 0.0)
    assert routes(s.dispatch(0.0)) == [("busy", "beta")]
    s.submit("r", [AgentTask("t", "code")], 0.0)
    assert routes(s.dispatch(0.0)) == [("t", "alpha")]
    s.finish("r", "t", 1, Outcome.ERROR, 1.0, error="boom")  # back-off 1 s: due at 2.0
    (r,) = [x for x in decisions_of(s.tick(2.0), RouteTask)] or [None]  # type: ignore[list-item]
    if taker == "alpha":
        assert r is not None
        assert (r.task_id, r.spec) == ("t", "alpha")
        assert r.breakdown["penalty"] == 1.0
        assert "penalised by the back-off, not barred" in r.reason
    else:
        assert r is None  # it waits for beta
        s.finish("b", "busy", 1, Outcome.SUCCEEDED, 1.0 + beta_busy_s)
        (r,) = decisions_of(s.tick(1.5 + beta_busy_s), RouteTask)
        assert (r.task_id, r.spec) == ("t", "beta")


def test_a_quarantined_other_spec_does_not_hold_the_retry() -> None:
    s = sched(agent_spec("alpha", {"code": 0.9}), agent_spec("beta", {"code": 0.9}))
    beta = s.agents["beta"]
    s.pool.set_state(beta, beta.state.__class__("quarantined"))
    s.submit("r", [AgentTask("t", "code")], 0.0)
    s.dispatch(0.0)
    s.finish("r", "t", 1, Outcome.ERROR, 1.0, error="boom")
    assert routes(s.tick(2.0)) == [("t", "alpha")]


def test_min_proficiency_forbids_weaker_agents_per_task_and_per_capability() -> None:
    s = sched(agent_spec("weak", {"code": 0.4}), agent_spec("strong", {"code": 0.9}))
    s.submit("r", [AgentTask("busy", "code", estimate_s=100.0)], 0.0)
    assert routes(s.dispatch(0.0)) == [("busy", "strong")]
    s.submit("q", [AgentTask("hard", "code", min_proficiency=0.5), AgentTask("easy", "code")],
             0.0)  # fmt: skip
    assert routes(s.dispatch(0.0)) == [("easy", "weak")]  # "hard" waits for "strong"
    s2 = sched(agent_spec("weak", {"code": 0.4}), min_proficiency={"code": 0.5})
    with pytest.raises(WorkflowError, match=r"min_proficiency.*proficiency 0\.5"):
        s2.submit("r", [AgentTask("t", "code")], 0.0)


def test_every_spec_is_scored_however_many_instances_an_overclaimer_has() -> None:
    s = Scheduler()
    liar = agent_spec("liar", {"code": 0.95})
    for k in range(40):
        s.add_agent(liar, 0.0, instance_id=f"liar#{k}")
    s.add_agent(agent_spec("honest", {"code": 0.5}), 0.0)
    learn(s, "liar", "code", 0, 10, 1.0)
    s.submit("r", [AgentTask("t", "code")], 0.0)
    assert routes(s.dispatch(0.0)) == [("t", "honest")]


def test_learned_speed_and_success_move_the_choice() -> None:
    s = sched(agent_spec("a", {"code": 0.7}), agent_spec("b", {"code": 0.7}))
    learn(s, "a", "code", 10, 0, 30.0)
    learn(s, "b", "code", 10, 0, 10.0)
    s.submit("r", [AgentTask("t", "code")], 0.0)
    assert routes(s.dispatch(0.0)) == [("t", "b")]
    s2 = sched(agent_spec("a", {"code": 0.7}), agent_spec("b", {"code": 0.7}))
    learn(s2, "a", "code", 10, 0, 10.0)
    learn(s2, "b", "code", 2, 8, 10.0)
    s2.submit("r", [AgentTask("t", "code")], 0.0)
    assert routes(s2.dispatch(0.0)) == [("t", "a")]


def test_hard_tasks_prefer_strong_agents_through_the_fit() -> None:
    s = sched(agent_spec("weak", {"code": 0.3}), agent_spec("strong", {"code": 0.9}))
    s.submit("r", [AgentTask("t", "code", complexity=0.9)], 0.0)
    assert routes(s.dispatch(0.0)) == [("t", "strong")]


def test_only_ready_instances_take_work_and_unknown_capabilities_are_not_routed() -> None:
    r = Router(Learning())
    spec = agent_spec("a", {"code": 0.9})
    inst = AgentInstance("a", spec, 1)
    r.add(inst)
    assert r.route(AgentTask("t", "docs"), 0.0) is None
    choice = r.route(AgentTask("t", "code"), 0.0)
    assert choice is not None
    assert choice.instance is inst
    inst.running = 1
    r.adjust_free(inst, -1)
    assert r.route(AgentTask("t", "code"), 0.0) is None  # nothing free, nothing running


# Rank revision: (learned unit of "slow", order of two ready tasks)
def test_ranks_are_revised_when_a_learned_duration_moves_materially() -> None:
    s = sched(agent_spec("w", {"a": 0.9, "b": 0.9}), max_concurrency=1)
    # Two chains: a1 -> a2 (capability a) and b1 -> b2 (b). Nothing learned: equal ranks.
    tasks = [AgentTask("a1", "a"), AgentTask("a2", "a", depends_on=("a1",)),
             AgentTask("b1", "b"), AgentTask("b2", "b", depends_on=("b1",)),
             AgentTask("first", "b", complexity=0.0)]  # fmt: skip
    s.submit("r", tasks, 0.0)
    run = s.runs["r"]
    assert run.tasks["a1"].rank == run.tasks["b1"].rank == 2.0
    (r,) = decisions_of(s.dispatch(0.0), RouteTask)
    assert r.task_id == "a1"
    s.finish("r", "a1", 1, Outcome.SUCCEEDED, 10.0)  # capability a: 10 s, not 1: revise
    assert s.revisions == 1
    assert run.tasks["a2"].rank == pytest.approx(10.0)
    assert run.tasks["b1"].rank == pytest.approx(2.0)
    (r,) = decisions_of(s.dispatch(10.0), RouteTask)
    assert r.task_id == "a2"  # the long chain's rest first (it was queued behind b1 by seq)
    # A move within a quarter, or before the evidence doubled, revises nothing.
    s.finish("r", "a2", 1, Outcome.SUCCEEDED, 21.0)
    assert s.revisions == 1


# Scarcity's pressure on the sole auditor (1 slot; audits and code) when it is asked for code:
# (queued audits, pending audits, queued code, pending code) on a pool of 5 slots, 1 s a task.
PRESSURE_TABLE = [
    ((0, 0, 10, 0), 0.0),  # no audits ahead: the auditor is free to code
    ((1, 0, 9, 0), 0.5),  # 1 s of audits against 10 s of work over 5 slots (2 s): half
    ((2, 0, 3, 0), 1.0),  # 2 s of audits against 1 s ahead: the auditor is the bottleneck
    ((0, 4, 18, 0), 0.5),  # pending tasks count half: 2 s of audits against 4 s ahead
]


@pytest.mark.parametrize(("counts", "expected"), PRESSURE_TABLE)
def test_scarcity_is_the_share_of_the_time_ahead_the_other_work_needs(
    counts: tuple[int, int, int, int], expected: float
) -> None:
    from metaagent.core.routing.scarcity import pressure, work_ahead
    from metaagent.core.spec_entry import SpecEntry

    entry = SpecEntry(AUDITOR)
    entry.slots = 1
    qa, pa, qc, pc = counts
    waiting, pending = {"audit": qa, "code": qc}, {"audit": pa, "code": pc}
    horizon = work_ahead(waiting, pending, lambda c: None, 5)
    slots = {"audit": 1, "code": 4}
    assert pressure(entry, "code", waiting, pending, slots, lambda c: None, horizon) == (
        pytest.approx(expected)
    )
