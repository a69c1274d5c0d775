"""Soft fallback priced: the repeat factor learned from repeats, the success-only duration a
repeat is expected to take, and who takes a retry, as literal tables on virtual time."""

from __future__ import annotations

import pytest

from metaagent import AgentTask, Outcome, RouteTask, Scheduler, SchedulerConfig
from metaagent.core.learning import Learning
from metaagent.core.repeats import PRIOR_FACTOR, factor
from metaagent.testing import NO_JITTER_RETRY, agent_spec, decisions_of

# (successes of repeats, their expected successes, prior) -> factor
FACTOR_TABLE = [
    (0, 0.0, 0.5, 0.5),  # no evidence: the prior
    (0, 5.0, 0.5, 1.0 / 7.0),  # five expected successes, none came: correlated
    (5, 5.0, 0.5, 6.0 / 7.0),  # as many as first tries would have had: nearly independent
    (10, 5.0, 0.5, 1.0),  # more than expected: capped at 1
    (0, 100.0, 0.5, 0.02),  # never: floored, so a repeat stays finitely priced
]


@pytest.mark.parametrize(("ok", "expected", "prior", "want"), FACTOR_TABLE)
def test_the_repeat_factor_is_successes_over_expected_shrunk_to_the_prior(
    ok: int, expected: float, prior: float, want: float
) -> None:
    assert factor(ok, expected, prior) == pytest.approx(want)


def test_a_spec_learns_its_factor_and_a_silent_one_takes_the_pools() -> None:
    learning = Learning()
    assert learning.repeat_factor("a", "code") == (PRIOR_FACTOR, 0)
    for _ in range(8):  # a's repeats fail every time (the task is beyond it)
        learning.record_repeat("a", "code", False, 0.8)
    phi_a, n = learning.repeat_factor("a", "code")
    pool = (0 + 2 * 0.5) / (6.4 + 2)  # every repeat, pooled
    assert n == 8
    assert phi_a == pytest.approx((0 + 2 * pool) / (6.4 + 2))
    phi_b, n_b = learning.repeat_factor("b", "code")
    assert (phi_b, n_b) == (pytest.approx(pool), 0)  # b has none: the pool's
    flaky = Learning()
    for k in range(10):  # repeats succeed as often as first tries (0.6): independent
        flaky.record_repeat("c", "code", k % 5 != 0 and k % 5 != 1, 0.6)
    phi_c, _ = flaky.repeat_factor("c", "code")
    assert phi_c == pytest.approx((6 + 2 * (6 + 1) / 8) / 8)
    assert phi_c > 0.9 > 0.1 > phi_a


def test_a_repeat_is_expected_to_take_as_long_as_a_success() -> None:
    learning = Learning()
    learning.record("fast-fail", "code", False, 0.01, 0.5)  # fails at once
    assert learning.success_unit("fast-fail", "code") is None  # no success seen anywhere
    learning.record("steady", "code", True, 6.0, 0.5)
    # fast-fail has no success of its own: the capability's successes (steady's 6 s)
    assert learning.success_unit("fast-fail", "code") == pytest.approx(6.0)
    learning.record("fast-fail", "code", True, 2.0, 0.5)
    assert learning.success_unit("fast-fail", "code") == pytest.approx(2.0)  # its own now
    assert learning.success_unit("steady", "code") == pytest.approx(6.0)


def sched() -> Scheduler:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY))
    s.add_agent(agent_spec("beta", {"code": 0.9}), 0.0)
    s.add_agent(agent_spec("alpha", {"code": 0.9}), 0.0)
    for spec in ("alpha", "beta"):
        for _ in range(30):
            s.learning.record(spec, "code", True, 4.0, 0.5)
    return s


# alpha failed the task and is free; beta is busy. (what alpha's repeats taught: ok, expected;
# beta's remaining busy time) -> who takes the retry when its back-off (1 s) ends.
RETRY_TABLE = [
    (None, 3.0, "beta"),  # no evidence (factor 0.5): alpha's repeat 9.2s > 3 + 4.1s: wait
    (None, 30.0, "alpha"),  # beta busy for long: alpha takes it back at once
    ((10, 9.7), 3.0, "alpha"),  # alpha's repeats succeed like first tries: 5.1s < 7.1s
    ((0, 9.7), 30.0, "beta"),  # alpha's repeats always fail: even 30 s of waiting is cheaper
]


@pytest.mark.parametrize(("history", "beta_busy_s", "taker"), RETRY_TABLE)
def test_the_failed_spec_takes_the_retry_back_when_its_repeats_are_cheapest(
    history: tuple[int, float] | None, beta_busy_s: float, taker: str
) -> None:
    s = sched()
    if history is not None:
        ok, expected = history
        for k in range(10):
            s.learning.record_repeat("alpha", "code", k < ok, expected / 10)
    s.submit("b", [AgentTask("busy", "code", estimate_s=beta_busy_s + 1)], 0.0)
    assert [r.spec for r in decisions_of(s.dispatch(0.0), RouteTask)] == ["beta"]
    s.submit("r", [AgentTask("t", "code")], 0.0)
    assert [r.spec for r in decisions_of(s.dispatch(0.0), RouteTask)] == ["alpha"]
    s.finish("r", "t", 1, Outcome.ERROR, 1.0, error="boom")  # back-off 1 s: due at 2.0
    got = decisions_of(s.tick(2.0), RouteTask)
    if taker == "alpha":
        (r,) = got
        assert (r.task_id, r.spec) == ("t", "alpha")
        assert r.breakdown["penalty"] == 1.0  # the back-off, paid again
        assert "back on alpha, which failed it" in r.reason
        assert "not barred" in r.reason
        return
    assert got == []  # it waits for beta
    s.finish("b", "busy", 1, Outcome.SUCCEEDED, 1.0 + beta_busy_s)
    (r,) = decisions_of(s.tick(1.0 + beta_busy_s), RouteTask)
    assert (r.task_id, r.spec) == ("t", "beta")
    assert "not back on alpha, which failed it" in r.reason
    assert r.candidates[1].agent == "alpha"  # priced, not left out


def test_the_scheduler_learns_from_the_repeats_it_makes() -> None:
    s = Scheduler(SchedulerConfig(retry=NO_JITTER_RETRY))
    s.add_agent(agent_spec("solo", {"code": 0.8}), 0.0)
    s.submit("r", [AgentTask("t", "code", max_attempts=3)], 0.0)
    s.dispatch(0.0)
    s.finish("r", "t", 1, Outcome.ERROR, 2.0, error="boom")
    expected = s.learning.expected_success("solo", "code", 0.8, 0.5)
    (r,) = decisions_of(s.tick(3.0), RouteTask)  # the only agent: a repeat
    assert r.spec == "solo"
    s.finish("r", "t", 2, Outcome.SUCCEEDED, 5.0)
    arm = s.learning.arms[("solo", "code")]
    assert (arm.repeats, arm.repeat_successes) == (1, 1)
    assert arm.repeat_expected == pytest.approx(expected)
    # Beta(1 + 1.6, 1 + 0.4 + 1): the posterior after the failure, complexity 0.5 <= 0.8
    assert expected == pytest.approx(2.6 / 5.0)
